"""CMYK output for a press (``run --cmyk PROFILE``): the separation, the CMYK TIFF, the soft proof, refusals.

The press is :func:`icc_profiles.cmyk_profile`: its A2B0 is a closed form (ink -> colour,
:func:`icc_profiles.ink_to_srgb`) and its B2A0 a stated separation of it (colour -> ink,
:func:`icc_profiles.srgb_to_ink`), so what LittleCMS makes of it is known without LittleCMS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import needs_weights
from icc_profiles import cmyk_profile, ink_to_srgb, srgb_to_ink, without_tag
from PIL import Image
from typer.testing import CliRunner

from nnst_hr import __version__, icc
from nnst_hr.cli import app
from nnst_hr.errors import InputError
from nnst_hr.files import read_image, srgb_profile, write_cmyk_tiff, write_image
from nnst_hr.printing import write_proof

PRESS = cmyk_profile()
OTHER_PRESS = cmyk_profile(black_start=0.6, description="Other press")  # the same inks, more black (GCR)
INK_TOLERANCE = 0.005  # in gamut: LittleCMS's interpolation of the B2A0 grid against the closed-form ink
# in gamut, sRGB -> ink -> sRGB through the two tables: measured 0.28 / 255
ROUND_TRIP = 1 / 255


def in_gamut(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(ink, srgb)``: ``count`` inks well inside the press's gamut (cyan, magenta, yellow 10 .. 60 %, no black,
    where the separation uses none: colours lighter than its black start) and the sRGB colours they print."""
    rng = np.random.default_rng(seed)
    ink = np.zeros((count, 4))
    ink[:, :3] = 0.1 + 0.5 * rng.random((count, 3))
    return ink, ink_to_srgb(ink)


def image_of(colours: np.ndarray) -> np.ndarray:
    return np.asarray(colours, np.float32).reshape(1, -1, 3)


# --------------------------------------------------------------------------- the separation


def test_the_ink_of_a_printable_colour_is_the_ink_that_prints_it():
    ink, srgb = in_gamut(500)
    ours = icc.srgb_to_cmyk(image_of(srgb), PRESS)[0]
    assert np.abs(ours - ink).max() < INK_TOLERANCE
    np.testing.assert_allclose(srgb_to_ink(srgb), ink, atol=1e-9)  # the reference itself inverts the closed form


def test_greys_get_the_separations_black():
    greys = np.repeat(np.linspace(0.1, 1, 37)[:, None], 3, axis=1)
    ours = icc.srgb_to_cmyk(image_of(greys), PRESS)[0]
    expected = srgb_to_ink(greys)
    assert np.abs(ours - expected).max() < 0.02
    assert expected[:, 3].max() > 0.5 and expected[-10:, 3].max() == 0  # darks with black, lights without


def test_white_paper_is_no_ink_and_black_the_presss_darkest():
    white, black = np.ones((1, 1, 3), np.float32), np.zeros((1, 1, 3), np.float32)
    assert icc.srgb_to_cmyk(white, PRESS, bits=8).tolist() == [[[0, 0, 0, 0]]]
    # 16 bits: lcms interpolates a* = b* = 0 (code 32768) between the grid's middle node (32767.5) and the next
    assert icc.srgb_to_cmyk(white, PRESS, bits=16).max() <= 8
    darkest = icc.srgb_to_cmyk(black, PRESS)[0, 0]
    assert darkest[3] > 0.999 and darkest[:3].min() > 0.9  # full black over nearly full colour: the press's black


def test_another_press_separates_the_same_colour_into_other_ink():
    """Negative control: the ink comes from the profile's own table, not from a formula of ours. Both presses
    print the same colour; the other one puts more of it in black."""
    grey = np.full((1, 1, 3), 0.5, np.float32)
    ours, other = icc.srgb_to_cmyk(grey, PRESS)[0, 0], icc.srgb_to_cmyk(grey, OTHER_PRESS)[0, 0]
    assert abs(ours[3] - srgb_to_ink(grey[0, 0])[3]) < 0.01
    assert abs(other[3] - srgb_to_ink(grey[0, 0], black_start=0.6)[3]) < 0.01
    assert other[3] - ours[3] > 0.3 and np.all(other[:3] < ours[:3] - 0.2)
    for press, ink in ((PRESS, ours), (OTHER_PRESS, other)):
        np.testing.assert_allclose(icc.cmyk_to_srgb(ink.reshape(1, 1, 4), press), grey, atol=ROUND_TRIP)


@pytest.mark.parametrize("bits", [None, 8, 16])
def test_code_values_are_the_float_ink_rounded(bits):
    ink, srgb = in_gamut(64)
    image = image_of(srgb)
    floats = icc.srgb_to_cmyk(image, PRESS)
    if bits is None:
        assert floats.dtype == np.float32 and floats.shape == (1, 64, 4)
        return
    codes = icc.srgb_to_cmyk(image, PRESS, bits)
    assert codes.dtype == (np.uint8 if bits == 8 else np.uint16)
    np.testing.assert_array_equal(codes, np.rint(floats * (2**bits - 1)))


def test_bands_give_the_image_at_once(monkeypatch):
    _, srgb = in_gamut(60)
    image = np.ascontiguousarray(np.broadcast_to(image_of(srgb), (7, 60, 3)))
    whole = icc.srgb_to_cmyk(image, PRESS)
    monkeypatch.setattr(icc, "SEPARATE_ROWS", 3)
    np.testing.assert_array_equal(icc.srgb_to_cmyk(image, PRESS), whole)


# --------------------------------------------------------------------------- the TIFF


@pytest.mark.parametrize("bits", [16, 8])
def test_the_cmyk_tiff_reads_back_as_the_poster(tmp_path, bits):
    ink, srgb = in_gamut(256)
    image = image_of(srgb).reshape(16, 16, 3)
    path = write_cmyk_tiff(tmp_path / "press.tif", icc.srgb_to_cmyk(image, PRESS, bits), PRESS, bit_depth=bits,
                           dpi=150)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.photometric == tifffile.PHOTOMETRIC.SEPARATED and page.shape == (16, 16, 4)
        assert page.dtype == (np.uint16 if bits == 16 else np.uint8)
        assert page.tags.valueof(332) == 1  # InkSet CMYK
        assert bytes(page.tags[34675].value) == PRESS
        assert page.resolution == (150, 150) and page.tags.valueof(296) == 2  # inch
        assert page.tags.valueof(305) == f"nnst-hr {__version__}"
        stored = page.asarray()
    np.testing.assert_allclose(stored / (2**bits - 1), ink.reshape(16, 16, 4), atol=INK_TOLERANCE + 0.5 / 255)
    back = read_image(path)  # through the embedded profile
    np.testing.assert_allclose(back, image, atol=ROUND_TRIP + (1 / 255 if bits == 8 else 0))
    # negative control: the same ink read without its profile (the formula viewers use) is not the poster
    assert np.abs(icc.naive_cmyk_to_srgb(stored / (2**bits - 1)) - image).max() > 0.05


def test_write_cmyk_tiff_refuses_what_is_not_a_tiff_and_keeps_what_is_there(tmp_path):
    ink = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(InputError, match="CMYK is written as TIFF only; end the name with .tif"):
        write_cmyk_tiff(tmp_path / "o.png", ink, PRESS)
    existing = tmp_path / "o.tif"
    existing.write_bytes(b"keep")
    with pytest.raises(InputError, match="exists"):
        write_cmyk_tiff(existing, ink, PRESS)
    assert existing.read_bytes() == b"keep"


def test_tificc_separates_as_we_do(tmp_path):
    """LittleCMS's own TIFF applier, relative colorimetric with black-point compensation (-t1 -b), works in 16
    bits through a table it optimizes; ours in float."""
    if not shutil.which("tificc"):
        pytest.skip("LittleCMS's tificc (liblcms2-utils) is not installed")
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    source, reference, profile = tmp_path / "srgb.tif", tmp_path / "cmyk.tif", tmp_path / "press.icc"
    write_image(source, image)
    profile.write_bytes(PRESS)
    subprocess.run(["tificc", "-t1", "-b", "-w16", "-o", profile, source, reference], check=True,
                   capture_output=True)
    theirs = tifffile.imread(reference) / 65535
    ours = icc.srgb_to_cmyk(read_image(source), PRESS)
    assert np.abs(ours - theirs).max() < 0.02 and np.median(np.abs(ours - theirs)) < 0.001


@pytest.mark.parametrize("path", ["/usr/share/color/icc/ghostscript/default_cmyk.icc"])
def test_a_real_press_profile_round_trips_printable_colours(path):
    """Ghostscript's SWOP profile (where installed): its own ink's colour separated and read back through it gives
    that colour again."""
    if not Path(path).is_file():
        pytest.skip(f"{path} is not installed")
    profile = Path(path).read_bytes()
    assert icc.check_output_profile(profile)
    ink = np.random.default_rng(0).random((1, 200, 4)).astype(np.float32) * np.float32([0.6, 0.6, 0.6, 0])
    printable = icc.cmyk_to_srgb(ink, profile)
    again = icc.cmyk_to_srgb(icc.srgb_to_cmyk(printable, profile), profile)
    assert np.percentile(np.abs(again - printable), 99) < 4 / 255  # its two tables invert each other to that


# --------------------------------------------------------------------------- the soft proof


def test_the_proof_is_a_soft_proof_through_the_press(tmp_path):
    _, printable = in_gamut(1)
    colours = np.array([printable[0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # printable, sRGB's blue and green
    image = np.repeat(np.repeat(image_of(colours), 16, axis=0), 16, axis=1)  # 16 x 48 flat blocks
    with Image.open(write_proof(tmp_path / "proof.jpg", image, 300, press=PRESS)) as proof:
        soft = np.asarray(proof, np.float32)[8, 8::16] / 255  # the blocks' centres
    printed = icc.cmyk_to_srgb(icc.srgb_to_cmyk(image_of(colours), PRESS), PRESS)[0]
    np.testing.assert_allclose(soft, printed, atol=3 / 255)  # JPEG, 8 bits
    assert np.abs(soft[0] - colours[0]).max() < 3 / 255  # a printable colour looks as it is
    assert np.abs(soft[1:] - colours[1:]).max(axis=-1).min() > 0.15  # sRGB's primaries: the press cannot
    with Image.open(write_proof(tmp_path / "plain.jpg", image, 300)) as proof:  # negative control
        np.testing.assert_allclose(np.asarray(proof, np.float32)[8, 8::16] / 255, colours, atol=3 / 255)


# --------------------------------------------------------------------------- refusals


def profile_files(tmp_path: Path) -> dict[str, Path]:
    files = {"not an ICC profile": b"not a profile at all, " * 10, "RGB": srgb_profile(),
             "no B2A0": without_tag(PRESS, b"B2A0"), "input class": PRESS[:12] + b"scnr" + PRESS[16:]}
    for name, data in files.items():
        (tmp_path / f"{name}.icc").write_bytes(data)
    return {name: tmp_path / f"{name}.icc" for name in files}


@pytest.mark.parametrize("name, message", [
    ("not an ICC profile", "is not an ICC profile; give the output profile (.icc) of the press"),
    ("RGB", "is an RGB profile, not a CMYK one; give the output profile (.icc) of the press"),
    ("no B2A0", "is a CMYK profile without a colour -> ink table (B2A0): it reads CMYK but cannot make it; give"),
    ("input class", "is an input (scanner, camera) profile, not an output (press) profile; give"),
    ("missing", ": no such file; give the output profile (.icc) of the press, which the print shop sends"),
    ("folder", "is a folder; give the output profile"),
])
def test_a_profile_that_cannot_separate_is_refused_before_any_work(tmp_path, name, message):
    paths = {**profile_files(tmp_path), "missing": tmp_path / "missing.icc", "folder": tmp_path}
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    for path in (content, style):
        write_image(path, np.full((64, 64, 3), 0.5, np.float32))
    result = CliRunner().invoke(app, ["run", str(content), str(style), "-o", str(tmp_path / "o.tif"), "--cmyk",
                                      str(paths[name])])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"--cmyk {paths[name]}" in lines[0] and message in lines[0], result.output
    assert not (tmp_path / "o.run").exists() and not (tmp_path / "o.tif").exists()


def test_cmyk_needs_a_tiff_output(tmp_path):
    press = tmp_path / "press.icc"
    press.write_bytes(PRESS)
    content = tmp_path / "c.png"
    write_image(content, np.full((64, 64, 3), 0.5, np.float32))
    result = CliRunner().invoke(app, ["run", str(content), str(content), "-o", str(tmp_path / "o.png"), "--cmyk",
                                      str(press)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"--cmyk writes a CMYK TIFF, not o.png: give -o {tmp_path / 'o.tif'}" in result.output


def test_the_profile_checks_name_what_is_wrong():
    assert icc.check_output_profile(PRESS) == "Test press CMYK"
    assert icc.check_output_profile(cmyk_profile(version=4, pcs=b"XYZ "))  # v4, XYZ connection space
    with pytest.raises(icc.ProfileError, match="a gray profile, not a CMYK one"):
        icc.check_output_profile(srgb_profile()[:16] + b"GRAY" + srgb_profile()[20:])


# --------------------------------------------------------------------------- end to end


def press_run_files(tmp_path):
    """A 64 px content and style of noise, and the test press's profile, as files."""
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    rng = np.random.default_rng(0)
    write_image(content, rng.random((64, 64, 3)).astype(np.float32))
    write_image(style, rng.random((64, 64, 3)).astype(np.float32))
    press = tmp_path / "press.icc"
    press.write_bytes(PRESS)
    return content, style, press


@needs_weights
def test_cli_cmyk_bled_print_end_to_end(tmp_path):
    content, style, press = press_run_files(tmp_path)
    output = tmp_path / "o.tif"
    result = CliRunner().invoke(app, ["run", str(content), str(style), "-o", str(output), "--size", "64", "--steps",
                                      "1", "--split-steps", "1", "--print", "1.5x2in", "--dpi", "32", "--bleed", "3",
                                      "--cmyk", str(press)])
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(output) as tif:
        page = tif.pages.first
        assert page.photometric == tifffile.PHOTOMETRIC.SEPARATED and page.shape == (72, 56, 4)
        assert page.dtype == np.uint16 and page.resolution == (32, 32) and bytes(page.tags[34675].value) == PRESS
    poster = read_image(output)
    folder = tmp_path / "o.run"
    with Image.open(folder / "proof.jpg") as proof:
        soft = np.asarray(proof, np.float32) / 255
    assert soft.shape == (72, 56, 3)
    # the proof is the CMYK output as it prints: 8 x 8 block means inside the trim line (the JPEG keeps those)
    def blocks(image):
        return image[8:64, 8:48].reshape(7, 8, 5, 8, 3).mean(axis=(1, 3))

    assert np.abs(blocks(soft) - blocks(poster)).max() < 2 / 255
    assert json.loads((folder / "config.json").read_text())["cmyk"] == str(press.resolve())


@needs_weights
def test_no_cmyk_reruns_a_press_run_from_its_config_as_an_srgb_output(tmp_path):
    """``run --config o.run/config.json`` reruns the recorded ``--cmyk``: to a PNG it is refused (a CMYK output is a
    TIFF), and nothing dropped it; ``--no-cmyk`` does, as ``--no-guide`` drops the masks folder."""
    content, style, press = press_run_files(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(content), str(style), "-o", str(tmp_path / "o.tif"), "--size", "64",
                                 "--steps", "1", "--split-steps", "1", "--print", "1.5x2in", "--dpi", "32",
                                 "--cmyk", str(press)])
    assert result.exit_code == 0, result.output
    config, srgb = tmp_path / "o.run" / "config.json", tmp_path / "x.png"
    refused = runner.invoke(app, ["run", "--config", str(config), "-o", str(srgb)])  # the negative control
    assert refused.exit_code == 2 and "--cmyk writes a CMYK TIFF, not x.png" in refused.output, refused.output
    contradiction = runner.invoke(app, ["run", "--config", str(config), "-o", str(srgb), "--no-cmyk", "--cmyk",
                                        str(press)])
    assert contradiction.exit_code == 2
    assert f"--no-cmyk and --cmyk {press} contradict each other; give one" in contradiction.output
    result = runner.invoke(app, ["run", "--config", str(config), "-o", str(srgb), "--no-cmyk"])
    assert result.exit_code == 0, result.output
    with Image.open(srgb) as image:
        assert image.mode == "RGB" and image.size == (48, 64) and image.info["icc_profile"] == srgb_profile()
    recorded = json.loads((tmp_path / "x.run" / "config.json").read_text())
    assert recorded["cmyk"] is None and recorded["print"] == "1.5x2in" and recorded["nnst"]["steps"] == 1
    press.unlink()  # a profile gone since is not needed by a run that drops it
    assert runner.invoke(app, ["run", "--config", str(config), "-o", str(srgb), "--no-cmyk",
                               "--overwrite"]).exit_code == 0


# --------------------------------------------------------------------------- memory


MEASURE_WRITE = """
import sys
import numpy as np
from pathlib import Path
from nnst_hr.files import write_cmyk_tiff
from nnst_hr.icc import srgb_to_cmyk

def status(field):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field))

height, width, bits, profile, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
press = Path(profile).read_bytes()
y, x = np.mgrid[0:height, 0:width].astype(np.float32)
image = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 50)], -1).astype(np.float32)
write_cmyk_tiff(out, srgb_to_cmyk(image[:300, :64], press, bits), press, overwrite=True, bit_depth=bits)  # warm up
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:  # the peak (VmHWM) starts again from here
    f.write("5")
write_cmyk_tiff(out, srgb_to_cmyk(image, press, bits), press, overwrite=True, bit_depth=bits)
print(status("VmHWM:") - before)
"""


@pytest.mark.parametrize("shape, bits", [((1200, 3000), 16), ((1200, 3000), 8), ((600, 6000), 16)])
def test_the_memory_model_of_the_cmyk_write_is_its_measured_peak(tmp_path, shape, bits):
    """Separating and writing an image as ink raises the peak resident memory by what
    :func:`memory.press_write_bytes` counts beyond the image itself: the ink's code values and the float bands."""
    from nnst_hr import memory

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("no /proc/self/clear_refs to reset the peak with")
    profile = tmp_path / "press.icc"
    profile.write_bytes(PRESS)
    done = subprocess.run([sys.executable, "-c", MEASURE_WRITE, *map(str, shape), str(bits), str(profile),
                           str(tmp_path / "o.tif")], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    measured = int(done.stdout.split()[-1])
    model = memory.press_write_bytes(shape, bits) - memory.OUTPUT_IMAGE_BYTES * shape[0] * shape[1]
    assert 0.8 < measured / model < 1.15, (measured, model)


def test_the_memory_estimate_counts_the_cmyk_write_where_it_is_the_peak():
    """A poster of few rows (a panorama, searched small) peaks writing its ink: the bands weigh more than its pixels.
    There the estimate with ``press_bits`` is the closed form of the write, above the sRGB run's; a tall poster
    peaks in its colour stage either way."""
    from nnst_hr import memory

    panorama, sizes = (100, 1600), {"rotate": False, "max_search_size": 1024}  # NNST 16 x 256, the poster 256 x 4096
    srgb = memory.estimate_peak_bytes(panorama, panorama, 256, 4096, **sizes)
    inputs = 12 * 2 * 100 * 1600
    for bits, codes in ((16, 8), (8, 4)):
        ink = memory.estimate_peak_bytes(panorama, panorama, 256, 4096, press_bits=bits, **sizes)
        write = (12 + codes) * 256 * 4096 + memory.PRESS_BAND_BYTES * 256 * 4096  # image, codes, one band of 256 rows
        assert ink.poster == memory.BASE_BYTES + memory.NNST_LOADED_BYTES + inputs + write > srgb.poster
        assert ink.nnst == srgb.nnst
    with pytest.raises(InputError, match="this run needs about"):  # memory for the sRGB run, not for its ink
        memory.check_fits(panorama, panorama, 256, 4096, ram=srgb.ram * memory.HEADROOM, press_bits=16, **sizes)
    memory.check_fits(panorama, panorama, 256, 4096, ram=srgb.ram * memory.HEADROOM, **sizes)
    style = (2341, 3200)
    tall = memory.estimate_peak_bytes((900, 1600), style, 256, 4096)  # 2304 x 4096: the colour stage's 40 B/px
    assert memory.estimate_peak_bytes((900, 1600), style, 256, 4096, press_bits=16) == tall
    alone = memory.estimate_peak_bytes(panorama, panorama, 4096, nnst_done=True)  # no poster: NNST's result written
    assert memory.estimate_peak_bytes(panorama, panorama, 4096, nnst_done=True, press_bits=16).nnst == (
        memory.BASE_BYTES + inputs + memory.press_write_bytes((256, 4096), 16)) > alone.nnst


@pytest.mark.parametrize("bit_depth, bits", [(None, 16), (8, 8)])
def test_the_runs_memory_check_counts_its_cmyk_write(tmp_path, monkeypatch, bit_depth, bits):
    """``run --cmyk`` checks its memory with the ink's bits (the output's: 16 by default); without ``--cmyk``,
    none."""
    from nnst_hr import preflight
    from nnst_hr.run import RunOptions

    asked = []
    monkeypatch.setattr(preflight, "check_fits", lambda *args, **kwargs: asked.append(kwargs.get("press_bits")))
    monkeypatch.setattr(preflight, "check_disk_space", lambda *args, **kwargs: None)
    for cmyk in (tmp_path / "press.icc", None):
        options = RunOptions(bit_depth=bit_depth, cmyk=cmyk)
        preflight.check_resources(tmp_path / "o.tif", tmp_path / "o.run", (64, 64), (64, 64), options, "cpu")
    assert asked == [bits, None]
