"""Tests of patchsynth: properties checked against brute force and closed forms on tiny images."""

import numba
import numpy as np
import pytest

import patchsynth
from patchsynth import features, field, patchmatch, pyramid, synthesis, uniformity, vote
from patchsynth.synthesis import _schedule


def smooth_random(shape, channels, seed, cell=6):
    """Smooth random image in [0, 1]: noise on a coarse grid, upsampled bilinearly."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((shape[0] // cell + 2, shape[1] // cell + 2, channels), dtype=np.float32)
    return pyramid.resize(coarse, (shape[0] + 2 * cell, shape[1] + 2 * cell))[cell:-cell, cell:-cell]


def identity(shape):
    return np.stack(np.indices(shape), axis=-1).astype(np.int32)


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def brute_force_distances(target, source, patch_size):
    """All patch distances ``(Ht * Wt, Hs * Ws)`` of padded feature stacks, with NumPy."""
    r = patch_size // 2
    view = np.lib.stride_tricks.sliding_window_view

    def patches(stack):
        windows = view(stack, (patch_size, patch_size), axis=(0, 1))
        return windows.reshape(stack.shape[0] - 2 * r, stack.shape[1] - 2 * r, -1).reshape(
            -1, stack.shape[2] * patch_size**2)

    t, s = patches(target.astype(np.float64)), patches(source.astype(np.float64))
    return (t**2).sum(1)[:, None] + (s**2).sum(1)[None, :] - 2 * t @ s.T


@pytest.fixture(scope="module")
def texture():
    """A detailed 64 px style image and random guides detailed enough to pin every position."""
    rng = np.random.default_rng(1)
    style = np.clip(smooth_random((64, 64), 3, 2, cell=3) + 0.1 * rng.random((64, 64, 3)), 0, 1)
    guides = smooth_random((64, 64), 3, 3, cell=4)
    return style.astype(np.float32), guides


# Building blocks


def test_resize_halves_with_the_tent_filter_and_keeps_constants():
    checker = (np.indices((16, 16)).sum(0) % 2).astype(np.float32)[..., None]
    np.testing.assert_allclose(pyramid.resize(checker, (8, 8)), 0.5, atol=1e-6)
    constant = np.full((13, 17, 2), 0.3, np.float32)
    np.testing.assert_allclose(pyramid.resize(constant, (5, 9)), 0.3, atol=1e-6)
    ramp = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((1, 3, 1), np.float32)
    # Interior output rows average input rows 2i-1..2i+2 with weights [1, 3, 3, 1] / 8.
    np.testing.assert_allclose(pyramid.resize(ramp, (4, 3))[1:3, 0, 0], [2.5, 4.5], atol=1e-6)


def test_level_count_keeps_the_smaller_side_at_eleven_pixels():
    assert pyramid.max_levels((1024, 1024), (2048, 2048)) == 7
    levels = pyramid.max_levels((1024, 700))
    assert 700 / 2 ** (levels - 1) >= pyramid.MIN_LEVEL_SIDE > 700 / 2**levels
    assert pyramid.level_shapes((1024, 700), levels)[-1] == (32, 22)


def test_rescaled_identity_field_stays_identity():
    valid = np.ones((40, 60), bool)
    candidates = np.flatnonzero(valid).astype(np.int32)
    up = field.rescale_field(identity((20, 30)), (20, 30), (40, 60), valid, candidates,
                             field.stage_key(0))
    np.testing.assert_array_equal(up, identity((40, 60)))
    down = field.rescale_field(identity((40, 60)), (40, 60), (20, 30), valid[::2, ::2],
                               candidates, field.stage_key(0))
    np.testing.assert_array_equal(np.abs(down - identity((20, 30))).max(), 0)


def test_feature_stack_is_weighted_quantized_and_mirror_padded():
    rng = np.random.default_rng(0)
    style, guides = rng.random((6, 7, 2), np.float32), rng.random((6, 7, 3), np.float32)
    style_factor, guide_factor, unit = features.quantization(np.float32([1.0, 0.5]),
                                                             np.float32([2.0, 1.0, 0.25]))
    stack = features.feature_stack(style, guides, style_factor, guide_factor, 2)
    weighted = np.concatenate([style * [1.0, 0.5], guides * [2.0, 1.0, 0.25]], axis=2)
    assert stack.dtype == np.uint8 and stack.max() <= 255
    # One step is sqrt(unit) in weighted units; rounding is off by half a step at most.
    restored = stack.astype(np.float64) * np.sqrt(unit)
    expected = np.pad(weighted, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    np.testing.assert_allclose(restored, expected, atol=0.5 * np.sqrt(unit) + 1e-6)


def test_field_distances_clip_target_patches_at_the_border():
    rng = np.random.default_rng(0)
    # Values on the 8-bit grid, so that the stored features are exact.
    target = (rng.integers(0, 256, (9, 11, 4)) / 255).astype(np.float32)
    source = (rng.integers(0, 256, (8, 10, 4)) / 255).astype(np.float32)
    f = np.stack([rng.integers(0, 8, (9, 11)), rng.integers(0, 10, (9, 11))], -1).astype(np.int32)
    ones = np.ones(4, np.float32)
    _, factor, unit = features.quantization(np.zeros(0, np.float32), ones)
    stacks = [features.feature_stack(None, image, np.zeros(0, np.float32), factor, 2)
              for image in (target, source)]
    got = patchmatch.field_distances(stacks[0].reshape(13, -1), stacks[1].reshape(12, -1), f,
                                     5, 4, unit)
    mirrored = np.pad(source, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    expected = np.zeros((9, 11))
    for y, x, dy, dx in np.ndindex(9, 11, 5, 5):
        ty, tx = y + dy - 2, x + dx - 2
        if 0 <= ty < 9 and 0 <= tx < 11:
            diff = target[ty, tx] - mirrored[f[y, x, 0] + dy, f[y, x, 1] + dx]
            expected[y, x] += (diff.astype(np.float64) ** 2).sum()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_vote_matches_a_direct_average():
    rng = np.random.default_rng(0)
    source = rng.random((10, 12, 3), np.float32)
    f = np.stack([rng.integers(0, 10, (7, 8)), rng.integers(0, 12, (7, 8))], -1).astype(np.int32)
    error = rng.random((7, 8), np.float32) * 40
    got = vote.vote(features.pad(source, 1), f, error, 3, 1 / 27)
    padded = np.pad(source, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    expected = np.zeros_like(got)
    for y in range(7):
        for x in range(8):
            total, weights = 0, 0
            for cy in range(max(0, y - 1), min(7, y + 2)):
                for cx in range(max(0, x - 1), min(8, x + 2)):
                    w = 1 / (1 + error[cy, cx] / 27)
                    total = total + w * padded[f[cy, cx, 0] + y - cy + 1, f[cy, cx, 1] + x - cx + 1]
                    weights += w
            expected[y, x] = total / weights
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_penalty_is_the_uniformity_weight_at_fair_share():
    # A 4x4 target using each centre of a 4x4 source once: every source pixel is covered a fair
    # share, so away from the border the penalty equals the uniformity weight.
    valid = np.ones((12, 12), bool)
    f = identity((12, 12))
    records = np.zeros((12, 12, patchmatch.RECORD_WORDS), np.uint32)
    uniformity.store_occupancy(f, valid, 3, records)
    scale = uniformity.penalty_scale(0.7, 3, f.shape[0] * f.shape[1], valid.sum())
    np.testing.assert_allclose(records[2:-2, 2:-2, 0] * scale, 0.7, rtol=1e-6)
    valid[0, 0] = False
    uniformity.store_occupancy(f, valid, 3, records)
    assert records[0, 0, 0] == uniformity.FORBIDDEN


def test_patch_occupancy_is_the_double_box_sum_of_usage():
    rng = np.random.default_rng(0)
    f = np.stack([rng.integers(0, 9, (6, 7)), rng.integers(0, 11, (6, 7))], -1).astype(np.int32)
    use = np.zeros((9, 11))
    np.add.at(use, (f[..., 0], f[..., 1]), 1)
    expected = use
    for _ in range(2):  # box(box(usage)), zero outside the source
        padded = np.pad(expected, 2)
        expected = sum(padded[dy:dy + 9, dx:dx + 11] for dy in range(5) for dx in range(5))
    np.testing.assert_array_equal(uniformity.patch_occupancy(f, (9, 11), 5), expected)


def test_patch_sums_bound_the_patch_distance():
    rng = np.random.default_rng(0)
    stacks = [rng.integers(0, 256, (h + 4, w + 4, 7), dtype=np.uint8) for h, w in ((6, 8), (5, 9))]
    sums = [patchmatch.patch_sums(stack, 5) for stack in stacks]
    # Packed sums are the channel sums over each 5x5 patch (channels past BOUND_CHANNELS left out).
    windows = np.lib.stride_tricks.sliding_window_view(stacks[0].astype(np.int64), (5, 5), (0, 1))
    channel_sums = windows.sum(axis=(-1, -2))
    low, high = sums[0] & 0xFFFF, sums[0] >> 16
    np.testing.assert_array_equal(np.stack([low, high], -1).reshape(6, 8, -1),
                                  channel_sums[..., :patchmatch.BOUND_CHANNELS])
    # Cauchy-Schwarz: (sum of differences)^2 / 25 never exceeds the squared distance.
    records = np.zeros((5, 9, patchmatch.RECORD_WORDS), np.uint32)
    records[..., 1:] = sums[1]
    for (y, x), (qy, qx) in zip(np.ndindex(6, 8), rng.integers(0, (5, 9), (48, 2)), strict=True):
        patch_a = stacks[0][y:y + 5, x:x + 5].astype(np.int64)
        patch_b = stacks[1][qy:qy + 5, qx:qx + 5].astype(np.int64)
        distance = ((patch_a - patch_b) ** 2).sum()
        assert patchmatch._bound(sums[0], y, x, records, qy, qx) <= 25 * distance


# The synthesizer


def test_identical_guides_reproduce_the_source(texture):
    style, guides = texture
    result = patchsynth.synthesize(style, guides, guides)
    assert psnr(result.image, style) >= 35
    assert (result.field == identity(style.shape[:2])).all(-1).mean() >= 0.95
    assert result.image.dtype == np.float32 and result.field.dtype == np.int32
    assert result.error.shape == style.shape[:2]


def rotated_crop(image, angle, size):
    """Bilinear samples of ``image`` on a ``size`` grid rotated by ``angle`` about its centre."""
    centre = (np.array(image.shape[:2]) - 1) / 2
    yy, xx = np.indices(size) - (np.array(size)[:, None, None] - 1) / 2
    y = centre[0] + np.cos(angle) * yy - np.sin(angle) * xx
    x = centre[1] + np.sin(angle) * yy + np.cos(angle) * xx
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    return ((1 - fy) * (1 - fx) * image[y0, x0] + (1 - fy) * fx * image[y0, x0 + 1]
            + fy * (1 - fx) * image[y0 + 1, x0] + fy * fx * image[y0 + 1, x0 + 1]).astype(np.float32)


def test_patchmatch_finds_the_exact_nearest_patch():
    # A random image and a rotated, resampled view of it: every target patch has a close but
    # inexact match, and brute force over all source patches says which one is nearest.
    source = smooth_random((48, 48), 3, 10, cell=4)
    target = rotated_crop(source, 0.3, (32, 32))
    result = patchsynth.synthesize(source, source, target, style_weight=0.0, levels=1,
                                   uniformity=0.0, search_vote_iters=1, patchmatch_iters=16)
    # Brute force on the same 8-bit features the synthesizer compares.
    _, factor, unit = features.quantization(np.zeros(3, np.float32), np.full(3, 3**-0.5, np.float32))
    target_stack, source_stack = (
        features.feature_stack(image * 0, image, np.zeros(3, np.float32), factor, 2) for image in
        (target, source))
    all_pairs = unit * brute_force_distances(target_stack, source_stack, 5)
    best = all_pairs.min(axis=1).reshape(32, 32)
    found = all_pairs[np.arange(32 * 32), (result.field[..., 0] * 48 + result.field[..., 1]).ravel()]
    exact = found.reshape(32, 32) <= best + 1e-4
    # Brute force pads the target by mirroring, PatchMatch clips border patches to the target:
    # the two energies agree on the pixels whose patch lies inside the target.
    assert exact[2:-2, 2:-2].mean() >= 0.99


def test_a_shifted_crop_of_the_guide_yields_that_crop(texture):
    # Without uniformity (a crop uses half of the source, more than its fair share) and with
    # guides that outweigh the style, as when guiding by a crop.
    style, guides = texture
    result = patchsynth.synthesize(style, guides, guides[10:58, 6:50], uniformity=0.0,
                                   guide_weights=2.0)
    assert psnr(result.image, style[10:58, 6:50]) >= 35
    shift = result.field - identity((48, 44))
    assert (shift == (10, 6)).all(-1).mean() >= 0.95


def test_a_rotated_crop_of_the_guide_yields_that_crop(texture):
    # Unrotated patches cannot copy a rotated texture, but with guides that encode position
    # (two ramps) and a smooth style, the field points at the rotated positions.
    style, _ = texture
    smooth_style = pyramid.resize(pyramid.resize(style, (16, 16)), (64, 64))
    ramps = (np.stack(np.indices((64, 64)), axis=-1) / 63).astype(np.float32)
    crop = (slice(8, 56), slice(12, 52))
    result = patchsynth.synthesize(smooth_style, ramps, np.rot90(ramps[crop]).copy(),
                                   style_weight=0.05, uniformity=0.0)
    expected_field = np.rot90(identity((64, 64))[crop])
    assert (np.abs(result.field - expected_field).max(-1) <= 1).mean() >= 0.95
    assert psnr(result.image, np.rot90(smooth_style[crop])) >= 27


def usage_entropy(result, source_shape):
    counts = uniformity.usage(result.field, source_shape).ravel()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_uniformity_spreads_the_source_usage():
    # Every target pixel prefers the same few dark source patches; uniformity must spread them.
    ramp = np.linspace(0, 1, 48, dtype=np.float32)
    source_guide = (ramp[:, None] * ramp[None, :])[..., None]
    style = smooth_random((48, 48), 3, 5)
    target_guide = np.full((32, 32, 1), 0.05, np.float32)
    entropy = [usage_entropy(patchsynth.synthesize(style, source_guide, target_guide,
                                                   uniformity=weight), (48, 48))
               for weight in (0.0, 2.0)]
    assert entropy[1] > entropy[0] + 0.5


def test_zero_iterations_vote_the_initial_field(texture):
    style, guides = texture
    rng = np.random.default_rng(3)
    init = np.stack([rng.integers(0, 64, (20, 24)), rng.integers(0, 64, (20, 24))], -1)
    result = patchsynth.synthesize(style, guides, guides[:20, :24], init_field=init,
                                   search_vote_iters=0)
    np.testing.assert_array_equal(result.field, init)
    expected = vote.vote(features.pad(style, 2), init.astype(np.int32),
                         np.zeros((20, 24), np.float32), 5, 0.0)
    np.testing.assert_allclose(result.image, expected)


def test_source_mask_is_never_violated(texture):
    style, guides = texture
    mask = np.ones((64, 64), bool)
    mask[:, 20:40] = False  # the target below is best matched inside this band
    result = patchsynth.synthesize(style, guides, guides[16:48, 16:48], source_mask=mask)
    allowed = field.valid_centres(mask, 5)
    assert allowed[result.field[..., 0], result.field[..., 1]].all()


def test_same_seed_same_output_and_seed_matters(texture):
    style, guides = texture
    target = guides[::-1, 5:45].copy()
    a, b = (patchsynth.synthesize(style, guides, target, seed=7) for _ in range(2))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.field, b.field)
    c = patchsynth.synthesize(style, guides, target, seed=8)
    assert (c.field != a.field).any()


def test_the_result_does_not_depend_on_the_thread_count(texture, monkeypatch):
    # Tiny levels normally run on one thread: make every level parallel, then compare one thread
    # with all of them. The target is tall enough for two strips of each parity.
    monkeypatch.setattr(synthesis, "PARALLEL_MIN_PIXELS", 0)
    style, guides = texture
    target = np.ascontiguousarray(np.tile(guides[::-1, :24], (4 * patchmatch.STRIP_ROWS // 64, 1, 1)))
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        try:
            results.append(patchsynth.synthesize(style, guides, target, seed=3))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(results[0].field, results[1].field)
    np.testing.assert_array_equal(results[0].image, results[1].image)


def test_progress_reports_every_iteration(texture):
    style, guides = texture
    reports = []
    patchsynth.synthesize(style, guides, guides, levels=3, search_vote_iters=2,
                          patchmatch_iters=1, progress=reports.append)
    assert [(r["level"], r["iteration"]) for r in reports] == [
        (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
    assert reports[-1]["size"] == (64, 64) and reports[0]["levels"] == 3


def test_schedule_start_size_and_max_search_size():
    shapes = pyramid.level_shapes((512, 512), 6)  # 512 .. 16
    assert _schedule(shapes, 6, None, None) == [(lv, True) for lv in range(6)]
    assert _schedule(shapes, 6, 100, None) == [(0, True), (1, True), (2, True)]
    assert _schedule(shapes, 6, None, 128) == [(0, False), (2, True), (3, True), (4, True),
                                               (5, True)]
    assert _schedule(shapes, 0, None, None) == [(0, False)]


def test_max_search_size_votes_the_upsampled_field(texture):
    style, guides = texture
    result = patchsynth.synthesize(style, guides, guides, max_search_size=32)
    assert psnr(result.image, style) >= 25
    assert (np.abs(result.field - identity((64, 64))).max(-1) <= 1).mean() >= 0.9


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(source=np.zeros((8, 8), np.float32)), "shape"),
        (dict(source=np.zeros((8, 8, 3))), "float32"),
        (dict(source=np.zeros((8, 8, 5), np.float32)), "1 to 4"),
        (dict(target_guides=np.zeros((8, 8, 2), np.float32)), "channels"),
        (dict(source_guides=np.zeros((9, 8, 1), np.float32)), "resize"),
        (dict(patch_size=4), "odd"),
        (dict(source_mask=np.ones((8, 9), bool)), "source_mask"),
        (dict(source_mask=np.zeros((8, 8), bool)), "every"),
        (dict(init_field=np.zeros((4, 4), np.int32)), "init_field"),
        (dict(init_field=np.full((4, 4, 2), 8)), "outside"),
        (dict(guide_weights=[1.0, 2.0]), "guide_weights"),
        (dict(search_vote_iters=-1), "search_vote_iters"),
        # 0..255 floats saturated the 8-bit features (a garbage result, no error)
        (dict(source=np.full((8, 8, 3), 255, np.float32)), r"^source has values from 255 to 255: .*divide by 255"),
        (dict(target_guides=np.full((6, 6, 1), -3, np.float32)), r"^target_guides has values from -3 to -3"),
        (dict(source_guides=np.full((8, 8, 1), np.inf, np.float32)), r"^source_guides contains NaN or infinite"),
        # the dtype is the problem, not the range: the message said "must be float32 in [0, 1]"
        (dict(source_guides=np.zeros((8, 8, 1))), r"^source_guides must be float32, got float64; .*float32\)$"),
        (dict(source=np.zeros((8, 8, 3), np.uint8)), r"must be float32, got uint8; .*float32\) / 255$"),
        (dict(source=np.zeros((8, 8, 3), np.uint16)), r"got uint16; .*float32\) / 65535$"),
    ],
)
def test_bad_input_raises_a_clear_error(change, message):
    args = dict(source=np.zeros((8, 8, 3), np.float32),
                source_guides=np.zeros((8, 8, 1), np.float32),
                target_guides=np.zeros((6, 6, 1), np.float32))
    args.update(change)
    with pytest.raises(patchsynth.PatchSynthError, match=message):
        patchsynth.synthesize(args.pop("source"), args.pop("source_guides"),
                              args.pop("target_guides"), **args)


def test_values_a_little_outside_unit_range_are_accepted():
    """The poster's target guide is NNST's unclipped result, resized: it strays a little outside [0, 1]."""
    guides = np.linspace(-0.2, 1.2, 64, dtype=np.float32).reshape(8, 8, 1)
    result = patchsynth.synthesize(np.zeros((8, 8, 3), np.float32), guides, guides, patch_size=3, levels=1)
    assert result.image.shape == (8, 8, 3)


def test_a_sweep_visits_every_pixel_once_across_dithered_strips():
    # 200 rows: three whole strips and a partial one, their boundaries moved per column.
    key = np.uint64(5)
    offsets = patchmatch.strip_offsets(key, 200, 30)
    assert offsets.min() >= 0 and offsets.max() < patchmatch.STRIP_DITHER
    assert len(np.unique(offsets)) > 1  # boundaries are not straight rows
    assert (patchmatch.strip_offsets(np.uint64(6), 200, 30) != offsets).any()  # and move every sweep
    source, target = smooth_random((40, 40), 3, 11), smooth_random((200, 30), 3, 12)
    _, factor, unit = features.quantization(np.zeros(3, np.float32), np.full(3, 3**-0.5, np.float32))
    t_stack, s_stack = (features.feature_stack(image * 0, image, np.zeros(3, np.float32), factor, 2)
                        for image in (target, source))
    records = patchmatch.candidate_records(s_stack, 5)
    start = np.random.default_rng(0).integers(0, 40, (200, 30, 2)).astype(np.int32)
    for reverse in (False, True):
        # From an infinite distance any candidate wins: a pixel left at infinity was not visited.
        f, distance = start.copy(), np.full((200, 30), np.inf, np.float32)
        patchmatch.sweep(t_stack.reshape(204, -1), s_stack.reshape(44, -1),
                         patchmatch.patch_sums(t_stack, 5), records, f, distance, np.float32(0.0), 5,
                         3, unit, reverse, 40, key)
        assert np.isfinite(distance).all()
