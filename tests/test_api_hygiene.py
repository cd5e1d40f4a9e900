"""The Python API in a fresh process, as a notebook calls it first: every public stage leaves the process as it
found it (environment, cwd, every global RNG, thread counts, logging, warnings filters, signal handlers, torch's
flags), and its results are the same bits as this process computes with the same seed (both processes run
torch with the same thread count: another count sums in another order, ARCHITECTURE.md "Threads").

A fresh process matters: torch sets ``TORCHINDUCTOR_CACHE_DIR`` in ``os.environ`` when its first optimizer
imports ``torch._dynamo``, which the rest of the suite has long done by the time a test runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
from helpers import needs_weights

from nnst_hr.config import NNSTConfig, PosterConfig
from nnst_hr.nnst import stylize
from nnst_hr.poster import synthesize_poster_stage

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(size=88, coarsest=44, steps=2, split_steps=1, seed=2)
POSTER = dict(out_size=132, search_vote_iters=1, patchmatch_iters=1)

# The child: snapshots of what a library call may not change, around each public call. Third-party modules that
# add their own warnings filters on import (sympy by torch._dynamo, scipy.special) are imported first: the import
# is theirs, not a call's.
CHILD = r"""
import faulthandler, hashlib, json, logging, os, random, signal, sys, warnings
import numpy as np, numba, torch, sympy, scipy.special
from nnst_hr.config import NNSTConfig, PosterConfig
from nnst_hr.nnst import nnst_objective, stylize, synthesize_nnst
from nnst_hr.color import color_stage
from nnst_hr.poster import color_poster, synthesize_poster_stage
from nnst_hr.scores import score_image
import guidance, patchsynth

def state():
    loggers = ["", "nnst_hr", "patchsynth", "guidance", "py.warnings"]
    b = torch.backends
    return {
        "environ": dict(os.environ), "cwd": os.getcwd(), "umask": os.umask(os.umask(0o22)),
        "np_random": repr(np.random.get_state()), "random": repr(random.getstate()),
        "torch_rng": torch.random.get_rng_state().tolist(),
        "threads": [torch.get_num_threads(), torch.get_num_interop_threads(), numba.get_num_threads()],
        "logging": [repr((logging.getLogger(n).level, logging.getLogger(n).handlers, logging.getLogger(n).disabled))
                    for n in loggers] + [logging.root.manager.disable],
        "warnings": repr(warnings.filters) + repr(warnings.showwarning),
        "signals": {str(s): repr(signal.getsignal(s)) for s in signal.valid_signals()
                    if s not in (signal.SIGKILL, signal.SIGSTOP)},
        "torch_flags": repr((b.cudnn.benchmark, b.cudnn.deterministic, b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32,
                             torch.get_float32_matmul_precision(), torch.are_deterministic_algorithms_enabled(),
                             torch.get_default_dtype(), torch.is_grad_enabled(), b.mkldnn.enabled)),
        "numpy": repr((np.geterr(), np.get_printoptions())),
        "hooks": repr((sys.excepthook, faulthandler.is_enabled(), sys.getrecursionlimit())),
    }

content, style = (np.load(sys.argv[1])[name] for name in ("content", "style"))
config = NNSTConfig(**json.loads(sys.argv[2]))
poster = PosterConfig(**json.loads(sys.argv[3]))
np.random.seed(7); random.seed(7); torch.manual_seed(7)
changed = {}

def call(name, fn, *args, **kwargs):
    before = state()
    with warnings.catch_warnings(record=True):  # the small style's warning; catch_warnings restores the filters
        result = fn(*args, **kwargs)
    after = state()
    changed[name] = sorted(key for key in before if before[key] != after[key])
    if "environ" in changed[name]:
        changed[name].append(sorted(set(before["environ"].items()) ^ set(after["environ"].items())))
    return result

result = call("stylize", stylize, content, style, config)
nnst = call("synthesize_nnst", synthesize_nnst, content, style, config)
call("color_stage", color_stage, nnst.raw, content, style, config)
call("nnst_objective", nnst_objective, nnst.raw, style, config)
made = call("synthesize_poster_stage", synthesize_poster_stage, content, style, nnst, poster, config)
call("color_poster", color_poster, made.synthesized, content, style, nnst.style_size, config)
call("score_image", score_image, result.image, content, style, raw=result.raw, nnst_config=config)
call("patchsynth.synthesize", patchsynth.synthesize, style, style, style[8:40, 8:40])
call("guidance.load_masks", guidance.load_masks, "samples/guided/louvre_to_house")
print(json.dumps({"changed": {k: v for k, v in changed.items() if v},
                  "image": hashlib.sha256(result.image.tobytes()).hexdigest(),
                  "field": hashlib.sha256(result.field.tobytes()).hexdigest(),
                  "poster": hashlib.sha256(made.synthesized.tobytes()).hexdigest()}))
"""


@needs_weights
def test_a_fresh_process_is_left_as_it_was_and_computes_this_processs_bits(images, tmp_path):
    np.savez(tmp_path / "images.npz", content=images[0], style=images[1])
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "images.npz"), json.dumps(CONFIG),
                          json.dumps(POSTER)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert child["changed"] == {}
    here = stylize(*images, NNSTConfig(**CONFIG))  # same seed in this process: the same bits
    assert child["image"] == hashlib.sha256(here.image.tobytes()).hexdigest()
    assert child["field"] == hashlib.sha256(here.field.tobytes()).hexdigest()
    with warnings.catch_warnings(record=True):  # the small style's warning
        poster = synthesize_poster_stage(*images, here, PosterConfig(**POSTER), NNSTConfig(**CONFIG))
    assert child["poster"] == hashlib.sha256(poster.synthesized.tobytes()).hexdigest()


@needs_weights
def test_read_only_images_give_the_same_bits_without_torchs_warning(images):
    """A read-only image (``np.broadcast_to``, a memmap opened "r") got torch's "The given NumPy array is not
    writable" warning on the caller's stderr."""
    from nnst_hr.scores import bicubic_upsample

    frozen = [image.copy() for image in images]
    for image in frozen:
        image.setflags(write=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stylize(*frozen, NNSTConfig(**CONFIG))
        upsampled = bicubic_upsample(frozen[0], (40, 40))
    assert [str(w.message) for w in caught if "not writable" in str(w.message)] == []
    assert np.array_equal(result.image, stylize(*images, NNSTConfig(**CONFIG)).image)
    assert np.array_equal(upsampled, bicubic_upsample(images[0], (40, 40)))
