"""Segmentation losses and scores against pixel loops and torchmetrics; codebook usage against its formula."""

import csv
import io
import logging
import math
import pickle
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchmetrics = pytest.importorskip("torchmetrics")

from torchmetrics.classification import (  # noqa: E402
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassJaccardIndex,
)

from esq.builtin.training.codebook_usage import CodebookUsage, code_layout  # noqa: E402
from esq.builtin.training.losses import LOSSES, segmentation_loss  # noqa: E402
from esq.builtin.training.report import (  # noqa: E402
    confusion_matrix_csv,
    result_rows,
    setting_columns,
    warn_low_usage,
)
from esq.builtin.training.segmentation_metrics import (  # noqa: E402
    SegmentationScores,
    per_sample_iou,
)
from esq.errors import ConfigError, DataError, UnknownNameError  # noqa: E402

IGNORE = 255


def random_batch(seed, samples=2, classes=4, height=3, width=5, ignored=0.2, used_classes=None):
    """float64 logits (N, C, H, W) and int64 labels (N, H, W) with about ``ignored`` of them ``IGNORE``."""
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(samples, classes, height, width, generator=generator, dtype=torch.float64)
    target = torch.randint(0, used_classes or classes, (samples, height, width), generator=generator)
    target[torch.rand(samples, height, width, generator=generator) < ignored] = IGNORE
    return logits, target


def softmax(scores):
    exponentials = np.exp(scores - scores.max())
    return exponentials / exponentials.sum()


def pixels(logits, target, ignore_index=IGNORE):
    """(probabilities over classes, label) of every non-ignored pixel, by looping."""
    logits, target = logits.detach().numpy(), target.numpy()
    samples, _, height, width = logits.shape
    for n in range(samples):
        for y in range(height):
            for x in range(width):
                if target[n, y, x] != ignore_index:
                    yield softmax(logits[n, :, y, x]), target[n, y, x]


def reference_cross_entropy(logits, target, ignore_index=IGNORE):
    return np.mean([-math.log(p[t]) for p, t in pixels(logits, target, ignore_index)])


def reference_focal(logits, target, gamma, alpha=None):
    terms = []
    for p, t in pixels(logits, target):
        weight = 1.0 if alpha is None else alpha[t]
        terms.append(-weight * (1 - p[t]) ** gamma * math.log(p[t]))
    return np.mean(terms)


def reference_dice(logits, target, classes, smooth=1.0, ignore_index=IGNORE, only_labelled=False):
    """``only_labelled``: average over labelled classes only, the choice esq did not make."""
    intersection, mass, count = np.zeros(classes), np.zeros(classes), np.zeros(classes)
    for p, t in pixels(logits, target, ignore_index):
        for c in range(classes):
            label = 1.0 if t == c else 0.0
            intersection[c] += p[c] * label
            mass[c] += p[c]
            count[c] += label
    losses = [1 - (2 * intersection[c] + smooth) / (mass[c] + count[c] + smooth) for c in range(classes)]
    counted = [count[c] > 0 if only_labelled else mass[c] + count[c] > 0 for c in range(classes)]
    return np.mean([loss for loss, counts in zip(losses, counted, strict=True) if counts])


# Losses


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_entropy_is_the_mean_negative_log_probability_of_non_ignored_labels(seed):
    logits, target = random_batch(seed)
    loss = segmentation_loss("ce", num_classes=4)(logits, target)
    assert float(loss) == pytest.approx(reference_cross_entropy(logits, target), abs=1e-6)
    expected = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE)
    assert float(loss) == pytest.approx(float(expected), abs=1e-12)


@pytest.mark.parametrize("smooth", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_dice_is_one_minus_the_mean_soft_dice_over_classes(seed, smooth):
    logits, target = random_batch(seed)
    loss = segmentation_loss("dice", num_classes=4, smooth=smooth)(logits, target)
    assert float(loss) == pytest.approx(reference_dice(logits, target, 4, smooth), abs=1e-6)


def test_dice_counts_a_class_absent_from_the_labels_by_its_predicted_mass():
    logits, target = random_batch(3, classes=5, used_classes=3)
    loss = segmentation_loss("dice", num_classes=5)(logits, target)
    assert float(loss) == pytest.approx(reference_dice(logits, target, 5), abs=1e-6)
    assert float(loss) != pytest.approx(reference_dice(logits, target, 5, only_labelled=True), abs=1e-3)


@pytest.mark.parametrize("gamma", [2.0, 0.5, 3.0])
def test_focal_loss_down_weights_easy_pixels_by_one_minus_p_to_the_gamma(gamma):
    logits, target = random_batch(4)
    loss = segmentation_loss("focal", num_classes=4, gamma=gamma)(logits, target)
    assert float(loss) == pytest.approx(reference_focal(logits, target, gamma), abs=1e-6)


def test_focal_alpha_weights_each_pixel_by_its_class():
    logits, target = random_batch(5)
    alpha = [0.25, 1.0, 2.0, 0.5]
    loss = segmentation_loss("focal", num_classes=4, alpha=alpha)(logits, target)
    assert float(loss) == pytest.approx(reference_focal(logits, target, 2.0, alpha), abs=1e-6)
    scaled = segmentation_loss("focal", num_classes=4, alpha=0.25)(logits, target)
    assert float(scaled) == pytest.approx(0.25 * reference_focal(logits, target, 2.0), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 6])
def test_focal_with_gamma_zero_is_cross_entropy(seed):
    logits, target = random_batch(seed)
    focal = segmentation_loss("focal", num_classes=4, gamma=0.0)(logits, target)
    cross_entropy = segmentation_loss("ce", num_classes=4)(logits, target)
    assert float(focal) == pytest.approx(float(cross_entropy), abs=1e-12)


def test_combined_is_cross_entropy_plus_weighted_dice():
    logits, target = random_batch(7)
    loss = segmentation_loss("combined", num_classes=4, dice_weight=0.3, smooth=0.5)(logits, target)
    expected = reference_cross_entropy(logits, target) + 0.3 * reference_dice(logits, target, 4, 0.5)
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_dice_of_confident_correct_logits_is_zero_and_of_confident_wrong_logits_is_one():
    _, target = random_batch(8, ignored=0.0)
    one_hot = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).double()
    dice = segmentation_loss("dice", num_classes=4)
    assert float(dice(50 * one_hot, target)) < 1e-6
    wrong = torch.nn.functional.one_hot((target + 1) % 4, 4).permute(0, 3, 1, 2).double()
    assert float(dice(50 * wrong, target)) > 0.9


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_change_neither_the_loss_nor_get_a_gradient(name):
    logits, target = random_batch(9, ignored=0.4)
    loss_function = segmentation_loss(name, num_classes=4)
    changed = logits.clone()
    changed.permute(0, 2, 3, 1)[target == IGNORE] = 10.0
    assert float(loss_function(changed, target)) == pytest.approx(float(loss_function(logits, target)), abs=1e-12)
    logits.requires_grad_(True)
    loss_function(logits, target).backward()
    gradient = logits.grad.permute(0, 2, 3, 1)
    assert torch.all(gradient[target == IGNORE] == 0)
    assert torch.any(gradient[target != IGNORE] != 0)


@pytest.mark.parametrize("name", LOSSES)
def test_an_ignore_index_that_is_a_class_drops_the_pixels_labelled_with_it(name):
    logits, target = random_batch(10, ignored=0.0)
    loss = segmentation_loss(name, num_classes=4, ignore_index=0)(logits, target)
    moved = target.where(target != 0, IGNORE)
    assert float(loss) == pytest.approx(float(segmentation_loss(name, num_classes=4)(logits, moved)), abs=1e-12)
    assert float(loss) != pytest.approx(float(segmentation_loss(name, num_classes=4)(logits, target)), abs=1e-6)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("ce", {}),
        ("dice", {}),
        ("dice", {"smooth": 0.0}),
        ("focal", {}),
        ("combined", {}),
        ("combined", {"smooth": 0.0}),
    ],
)
def test_gradients_flow_and_are_finite(name, options):
    logits, target = random_batch(11, classes=5, used_classes=3)
    logits[:, 4] = -1e4  # class 4: absent and with no predicted mass, 0/0 if smooth = 0
    logits.requires_grad_(True)
    segmentation_loss(name, num_classes=5, **options)(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES)
def test_an_all_ignored_batch_gives_a_zero_that_keeps_the_graph(name):
    logits, _ = random_batch(12)
    target = torch.full((2, 3, 5), IGNORE)
    logits.requires_grad_(True)
    loss = segmentation_loss(name, num_classes=4)(logits, target)
    assert loss.requires_grad
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("name", LOSSES)
def test_losses_are_picklable_and_deterministic(name):
    logits, target = random_batch(13)
    loss_function = segmentation_loss(name, num_classes=4)
    copy = pickle.loads(pickle.dumps(loss_function))
    assert repr(copy) == repr(loss_function)
    assert torch.equal(copy(logits, target), loss_function(logits, target))
    assert torch.equal(loss_function(logits, target), loss_function(logits, target))


def test_half_precision_logits_are_computed_in_float32():
    logits, target = random_batch(14)
    loss = segmentation_loss("combined", num_classes=4)(logits.bfloat16(), target)
    assert loss.dtype == torch.float32
    reference = segmentation_loss("combined", num_classes=4)(logits.bfloat16().double(), target)
    assert float(loss) == pytest.approx(float(reference), abs=1e-5)


def test_an_unknown_loss_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match="unknown segmentation loss 'dise' \\(did you mean 'dice'\\?\\)"):
        segmentation_loss("dise", num_classes=4)


def test_an_option_of_another_loss_is_rejected_with_the_accepted_ones():
    with pytest.raises(UnknownNameError, match="unknown option 'gamma' for segmentation loss 'dice'.*options: smooth"):
        segmentation_loss("dice", num_classes=4, gamma=2.0)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("focal", {"gamma": -1.0}, "loss: gamma must be a finite number at least 0"),
        ("focal", {"alpha": [1.0, 2.0]}, "`alpha` expected None, a number or 4 per-class weights"),
        ("dice", {"smooth": "1"}, "loss: smooth must be a finite number at least 0"),
        ("ce", {"num_classes": 0}, "`num_classes` expected an integer >= 1"),
    ],
)
def test_bad_option_values_are_config_errors(name, options, message):
    arguments = {"num_classes": 4, **options}
    with pytest.raises(ConfigError, match=message):
        segmentation_loss(name, **arguments)


def test_a_label_outside_the_classes_is_a_data_error_not_an_ignored_pixel():
    logits, target = random_batch(15)
    target[0, 0, 0] = 4
    with pytest.raises(DataError, match=r"labels must lie in \[0, 4\) or equal ignore_index=255; found \[4\]"):
        segmentation_loss("ce", num_classes=4)(logits, target)


@pytest.mark.parametrize(
    ("logits_shape", "target_shape", "message"),
    [
        ((2, 3, 3, 5), (2, 3, 5), "3 channels but the loss was built for num_classes=4"),
        ((2, 4, 3, 5), (2, 5, 3), r"integer labels of shape \(2, 3, 5\)"),
    ],
)
def test_mismatched_shapes_are_data_errors(logits_shape, target_shape, message):
    with pytest.raises(DataError, match=message):
        segmentation_loss("ce", num_classes=4)(torch.zeros(logits_shape), torch.zeros(target_shape, dtype=torch.long))


# Per-sample IoU


def reference_per_sample_iou(predictions, target, classes, ignore_index=IGNORE):
    results = []
    for prediction, label in zip(predictions.numpy(), target.numpy(), strict=True):
        valid = label != ignore_index
        ious = []
        for c in range(classes):
            if c == ignore_index:
                continue
            predicted, labelled = (prediction == c) & valid, (label == c) & valid
            union = (predicted | labelled).sum()
            if union:
                ious.append((predicted & labelled).sum() / union)
        results.append(np.mean(ious) if ious else np.nan)
    return np.array(results)


def random_maps(seed, samples=6, classes=5, size=(4, 6), ignored=0.2, used_classes=None):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, used_classes or classes, (samples, *size), generator=generator)
    predictions = torch.where(
        torch.rand(samples, *size, generator=generator) < 0.6,
        target,
        torch.randint(0, used_classes or classes, (samples, *size), generator=generator),
    )
    target[torch.rand(samples, *size, generator=generator) < ignored] = IGNORE
    return predictions, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_sample_iou_averages_over_the_classes_present_in_each_sample(seed):
    predictions, target = random_maps(seed, used_classes=3 + seed)
    values = per_sample_iou(predictions, target, num_classes=5)
    assert values.dtype == torch.float64 and values.shape == (6,)
    np.testing.assert_allclose(values.numpy(), reference_per_sample_iou(predictions, target, 5), rtol=0, atol=1e-12)


def test_a_sample_with_two_of_four_classes_is_averaged_over_two_not_four():
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    predictions = torch.tensor([[[0, 0, 0, 1], [0, 0, 1, 1]]])  # class 0: 4/5, class 1: 3/4
    value = float(per_sample_iou(predictions, target, num_classes=4)[0])
    assert value == pytest.approx((4 / 5 + 3 / 4) / 2, abs=1e-12)
    previous_tool = (4 / 5 + 3 / 4 + 0 + 0) / 4
    assert value != pytest.approx(previous_tool)


def test_a_class_predicted_but_not_labelled_counts_as_zero_in_that_sample():
    target = torch.tensor([[[0, 0]]])
    predictions = torch.tensor([[[0, 2]]])
    assert float(per_sample_iou(predictions, target, num_classes=3)[0]) == pytest.approx((1 / 2 + 0) / 2, abs=1e-12)


def test_a_sample_whose_pixels_are_all_ignored_has_nan_iou():
    predictions, target = random_maps(3)
    target[1] = IGNORE
    values = per_sample_iou(predictions, target, num_classes=5)
    assert math.isnan(values[1])
    assert not values[[0, 2, 3, 4, 5]].isnan().any()


def test_an_ignore_index_that_is_a_class_is_never_present():
    predictions, target = random_maps(4)
    values = per_sample_iou(predictions, target.where(target != IGNORE, 0), num_classes=5, ignore_index=0)
    expected = reference_per_sample_iou(predictions, target.where(target != IGNORE, 0), 5, ignore_index=0)
    np.testing.assert_allclose(values.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("predictions", "target", "message"),
    [
        (
            torch.tensor([[[0, 5]]]),
            torch.tensor([[[0, 1]]]),
            r"`predictions` must hold classes in \[0, 5\).*found \[5\]",
        ),
        (torch.tensor([[[0, 1]]]), torch.tensor([[[0, -1]]]), r"`target` must hold classes .* found \[-1\]"),
        (torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), r"same shape \(N, H, W\)"),
        (torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[0, 1]]]), "`predictions` expected an integer tensor"),
    ],
)
def test_bad_class_maps_are_data_errors(predictions, target, message):
    with pytest.raises(DataError, match=message):
        per_sample_iou(predictions, target, num_classes=5)


def test_a_prediction_outside_the_classes_at_an_ignored_pixel_is_allowed():
    values = per_sample_iou(torch.tensor([[[0, 9]]]), torch.tensor([[[0, IGNORE]]]), num_classes=5)
    assert values.tolist() == [1.0]


# SegmentationScores


def reference_scores(batches, classes, ignore_index):
    """float64 dataset IoU per class, its mean over present classes, pixel accuracy, by counting."""
    predictions = torch.cat([p for p, _ in batches]).numpy().ravel()
    target = torch.cat([t for _, t in batches]).numpy().ravel()
    valid = target != ignore_index
    predictions, target = predictions[valid], target[valid]
    per_class = []
    for c in range(classes):
        union = ((predictions == c) | (target == c)).sum()
        present = union > 0 and c != ignore_index
        per_class.append(((predictions == c) & (target == c)).sum() / union if present else np.nan)
    return np.nanmean(per_class), per_class, (predictions == target).mean()


def several_batches(ignore_index=IGNORE, classes=6, used_classes=5):
    batches = [random_maps(seed, samples=3 + seed, classes=classes, used_classes=used_classes) for seed in range(4)]
    if ignore_index != IGNORE:
        batches = [(p, t.where(t != IGNORE, ignore_index)) for p, t in batches]
    return batches


@pytest.mark.parametrize("ignore_index", [IGNORE, 0])
def test_scores_match_torchmetrics_jaccard_and_accuracy_over_several_batches(ignore_index):
    batches = several_batches(ignore_index)  # class 5 never appears: absent from labels and predictions
    scores = SegmentationScores(num_classes=6, ignore_index=ignore_index)
    jaccard = MulticlassJaccardIndex(num_classes=6, ignore_index=ignore_index, average="macro")
    per_class_jaccard = MulticlassJaccardIndex(num_classes=6, ignore_index=ignore_index, average="none")
    accuracy = MulticlassAccuracy(num_classes=6, average="micro", ignore_index=ignore_index)
    confusion = MulticlassConfusionMatrix(num_classes=6, ignore_index=ignore_index)
    for predictions, target in batches:
        for metric in (scores, jaccard, per_class_jaccard, accuracy, confusion):
            metric.update(predictions, target)
    result = scores.compute()

    assert torch.equal(scores.confusion_matrix, confusion.compute())
    # torchmetrics divides in float32: equal to float32 rounding, not to 1e-12
    assert result["mean_iou"] == pytest.approx(float(jaccard.compute()), rel=1e-6)
    assert result["pixel_accuracy"] == pytest.approx(float(accuracy.compute()), rel=1e-6)
    torchmetrics_per_class = per_class_jaccard.compute().double().numpy()
    ours = np.array(result["per_class_iou"])
    absent = [5] + ([0] if ignore_index == 0 else [])
    assert np.isnan(ours[absent]).all()  # torchmetrics: zero_division (0) for class 5, and 0 for class 0
    present = [c for c in range(6) if c not in absent]
    np.testing.assert_allclose(ours[present], torchmetrics_per_class[present], rtol=1e-6)

    expected_mean, expected_per_class, expected_accuracy = reference_scores(batches, 6, ignore_index)
    assert result["mean_iou"] == pytest.approx(expected_mean, abs=1e-12)
    np.testing.assert_allclose(ours, expected_per_class, rtol=0, atol=1e-12)
    assert result["pixel_accuracy"] == pytest.approx(expected_accuracy, abs=1e-12)


def test_the_mean_iou_leaves_out_classes_absent_from_labels_and_predictions_alone():
    scores = SegmentationScores(num_classes=10)
    scores.update(torch.tensor([[[0, 1, 1]]]), torch.tensor([[[0, 1, 2]]]))
    result = scores.compute()
    assert result["mean_iou"] == pytest.approx((1 + 1 / 2 + 0) / 3, abs=1e-12)
    assert sum(math.isnan(value) for value in result["per_class_iou"]) == 7


def test_sample_iou_mean_and_median_skip_all_ignored_samples():
    batches = several_batches()
    batches[1][1][0] = IGNORE
    batches[2][1][3] = IGNORE  # 16 scored samples: the median is the mean of the two middle ones
    scores = SegmentationScores(num_classes=6)
    for predictions, target in batches:
        scores.update(predictions, target)
    result = scores.compute()
    values = np.concatenate([reference_per_sample_iou(p, t, 6) for p, t in batches])
    assert np.isnan(values).sum() == 2 and len(values) == 3 + 4 + 5 + 6
    assert result["sample_iou_mean"] == pytest.approx(np.nanmean(values), abs=1e-12)
    assert result["sample_iou_median"] == pytest.approx(np.nanmedian(values), abs=1e-12)


def test_accumulating_batches_equals_scoring_them_at_once():
    batches = several_batches()
    in_batches, at_once = SegmentationScores(num_classes=6), SegmentationScores(num_classes=6)
    for predictions, target in batches:
        in_batches.update(predictions, target)
    predictions, target = (torch.cat(parts) for parts in zip(*batches, strict=True))
    at_once.update(predictions, target)
    assert_same_scores(in_batches.compute(), at_once.compute())


def test_reset_forgets_everything_and_nothing_scored_gives_nan():
    scores = SegmentationScores(num_classes=3)
    scores.update(torch.tensor([[[0, 1]]]), torch.tensor([[[IGNORE, IGNORE]]]))
    result = scores.compute()
    assert all(
        math.isnan(result[key]) for key in ("mean_iou", "pixel_accuracy", "sample_iou_mean", "sample_iou_median")
    )
    scores.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    assert scores.compute()["mean_iou"] == 1.0
    scores.reset()
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert math.isnan(scores.compute()["mean_iou"])


def assert_same_scores(first, second):
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_allclose(first[key], second[key], rtol=0, atol=1e-12, err_msg=key)


def on():
    return True


class TwoRanks:
    """A ``dist_sync_fn`` for two processes: every rank sent ``other`` states, in torchmetrics' order."""

    def __init__(self, other):
        self.other = iter(other)
        self.sent = []

    def __call__(self, tensor, group=None):
        self.sent.append(tensor)
        return [tensor, next(self.other)]


def test_states_are_summed_and_concatenated_across_processes():
    batches = several_batches()
    other_rank = SegmentationScores(num_classes=6)
    for predictions, target in batches[2:]:
        other_rank.update(predictions, target)
    other_states = [other_rank.confusion_matrix, torch.cat(other_rank.sample_iou)]
    this_rank = SegmentationScores(num_classes=6, dist_sync_fn=TwoRanks(other_states), distributed_available_fn=on)
    for predictions, target in batches[:2]:
        this_rank.update(predictions, target)
    one_process = SegmentationScores(num_classes=6)
    for predictions, target in batches:
        one_process.update(predictions, target)
    assert_same_scores(this_rank.compute(), one_process.compute())


def test_a_process_that_saw_no_batch_sends_float64_sample_ious():
    gather = TwoRanks([torch.zeros(6, 6, dtype=torch.long), torch.tensor([0.5], dtype=torch.float64)])
    idle_rank = SegmentationScores(num_classes=6, dist_sync_fn=gather, distributed_available_fn=on)
    with pytest.warns(UserWarning, match="called before the ``update``"):
        idle_rank.compute()
    assert [tensor.dtype for tensor in gather.sent] == [torch.long, torch.float64]


# -- what a training run reports: codebook usage over the whole set, tidy rows, the confusion matrix --


def reference_usage(codes, radix, levels=1):
    """Per level, from one histogram of every code (a plain numpy count)."""
    flat = np.asarray(codes).reshape(-1, levels)
    figures = []
    for level in flat.T:
        level = level[level >= 0]
        _, counts = np.unique(level, return_counts=True)
        p = counts / counts.sum()
        figures.append((len(counts) / radix, float(np.exp(-(p * np.log(p)).sum())), radix - len(counts)))
    return figures


def test_codebook_usage_is_a_histogram_of_the_whole_set_not_a_mean_of_batches():
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(8 * b, 8 * b + 8, (2, 4, 4), generator=generator) for b in range(4)]  # 8 codes each
    usage = CodebookUsage(code_radix=64)
    for codes in batches:
        usage.update(codes)
    result = usage.compute()
    ((expected_usage, expected_perplexity, expected_dead),) = reference_usage(torch.cat(batches), 64)
    assert result["codebook_usage"] == pytest.approx(expected_usage) and result["dead_codes"] == expected_dead
    assert result["perplexity"] == pytest.approx(expected_perplexity, rel=1e-12)
    mean_of_batches = np.mean([reference_usage(codes, 64)[0][0] for codes in batches])
    assert result["codebook_usage"] > mean_of_batches  # what the per-batch average reported: a quarter of it


def test_codebook_usage_is_counted_per_level_and_skips_dropped_codes():
    generator = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 6, (3, 5, 4, 3), generator=generator)  # b h w levels
    codes[..., 2] = codes[..., 2] % 2  # the third level uses 2 of 8 codes
    codes[0, 0, 0, 1] = -1  # a level dropped in training counts nowhere
    usage = CodebookUsage(code_radix=8, levels=3)
    usage.update(codes[:1])
    usage.update(codes[1:])
    result = usage.compute()
    expected = reference_usage(codes, 8, levels=3)
    for level, (share, perplexity, dead) in zip(result["levels"], expected, strict=True):
        assert (level["codebook_usage"], level["dead_codes"]) == pytest.approx((share, dead))
        assert level["perplexity"] == pytest.approx(perplexity, rel=1e-12)
    assert result["levels"][1]["vectors"] == codes[..., 1].numel() - 1
    assert result["codebook_usage"] == pytest.approx(np.mean([share for share, _, _ in expected]))


def test_codebook_usage_of_a_huge_codebook_holds_only_the_codes_seen():
    usage = CodebookUsage(code_radix=2**24)
    usage.update(torch.tensor([[3, 2**24 - 1, 3]]))
    result = usage.compute()
    assert result["distinct_codes"] == 2 and result["dead_codes"] == 2**24 - 2
    assert sum(state.numel() for state in usage.ids) == 2


def test_only_a_quantizer_that_declares_its_code_radix_is_counted():
    assert code_layout(types.SimpleNamespace(code_radix=16, codes_per_vector=3)) == (16, 3)
    assert code_layout(types.SimpleNamespace(code_radix=16)) == (16, 1)
    assert code_layout(types.SimpleNamespace(bits_per_vector=8.0)) is None  # a plugin's own quantizer
    assert code_layout(types.SimpleNamespace(code_radix=1, codes_per_vector=1)) is None  # no codebook
    assert code_layout(None) is None


SETTINGS = {"model": "tiny_cnn", "backbone": "tiny_cnn", "quantizer": "vq", "codebook_size": 8, "seed": 0}
NAMES = ["background", "cat", "dog", "bird", "fish", "never_seen"]


def scored_report(ignore_index=IGNORE, usage=None):
    batches = several_batches(ignore_index)  # class 5 never appears: absent from labels and predictions
    scores = SegmentationScores(num_classes=6, ignore_index=ignore_index)
    for predictions, target in batches:
        scores.update(predictions, target)
    return batches, {"scores": scores.compute(), "usage": usage}


def test_per_class_iou_rows_match_torchmetrics_and_an_absent_class_has_no_value_not_zero():
    batches, report = scored_report()
    per_class = MulticlassJaccardIndex(num_classes=6, ignore_index=IGNORE, average="none")
    for predictions, target in batches:
        per_class.update(predictions, target)
    theirs = per_class.compute().double().tolist()
    _, expected, _ = reference_scores(batches, 6, IGNORE)
    rows = [row for row in result_rows(SETTINGS, report, NAMES) if row["metric"] == "iou"]
    assert [row["class"] for row in rows] == NAMES
    for row, mine, plain in zip(rows[:5], theirs[:5], expected[:5], strict=True):
        assert row["value"] == pytest.approx(plain, abs=1e-12) and row["value"] == pytest.approx(mine, rel=1e-6)
    assert rows[5]["value"] is None and theirs[5] == 0.0  # torchmetrics' zero_division=0 would read as a failure


def test_the_confusion_matrix_file_is_torchmetrics_matrix_headed_by_class_names():
    batches, report = scored_report(ignore_index=0)
    confusion = MulticlassConfusionMatrix(num_classes=6, ignore_index=0)
    for predictions, target in batches:
        confusion.update(predictions, target)
    header, *lines = list(csv.reader(io.StringIO(confusion_matrix_csv(report["scores"]["confusion_matrix"], NAMES))))
    assert header[1:] == NAMES and [line[0] for line in lines] == NAMES
    assert [[int(count) for count in line[1:]] for line in lines] == confusion.compute().tolist()


def test_result_rows_are_tidy_one_per_metric_class_and_level_with_every_setting():
    levels = [{"codebook_usage": 0.5, "perplexity": 3.0, "dead_codes": 4.0, "distinct_codes": 4.0, "vectors": 9.0}] * 2
    usage = {"codebook_usage": 0.5, "perplexity": 3.0, "dead_codes": 4.0, "distinct_codes": 4.0, "levels": levels}
    _, report = scored_report(usage=usage)
    rows = result_rows(SETTINGS, report, NAMES)
    keys = {(row["metric"], row["class"], row["level"]) for row in rows}
    assert len(keys) == len(rows) and all(list(row) == list(rows[0]) for row in rows)
    assert all(row["codebook_size"] == 8 and row["seed"] == 0 for row in rows)
    assert {("codebook_usage", None, None), ("codebook_usage", None, 0), ("codebook_usage", None, 1)} <= keys
    assert {("mean_iou", None, None), ("pixel_accuracy", None, None), ("iou", "cat", None)} <= keys
    assert not [row for row in result_rows(SETTINGS, {**report, "usage": None}, NAMES) if row["level"] is not None]


def test_the_settings_carry_the_quantizers_resolved_options_but_not_its_input_width():
    quantizer = types.SimpleNamespace(options={"input_dim": 32, "codebook_size": 16, "bottleneck_dim": 64, "seed": 7})
    module = types.SimpleNamespace(model=types.SimpleNamespace(quantizer=quantizer), bits_per_vector=4.0)
    module.compression_ratio = 256.0
    config = types.SimpleNamespace(model="tiny_cnn", dataset="synthetic", seed=0)
    settings = setting_columns(config, module, "vq", epochs=3)
    assert settings["codebook_size"] == 16 and settings["bottleneck_dim"] == 64 and "input_dim" not in settings
    assert (settings["seed"], settings["quantizer_seed"]) == (0, 7)  # the run's seed is not overwritten
    assert (settings["bits_per_vector"], settings["epochs"], settings["split"]) == (4.0, 3, "test")


def test_a_codebook_used_under_ten_percent_is_a_warning_naming_the_model_and_its_usage(caplog):
    context = types.SimpleNamespace(log=logging.getLogger("esq.test_usage"))
    settings = {**SETTINGS, "quantizer": "simvq", "bits_per_vector": 9.0}
    low = {"distinct_codes": 15.0, "codebook_usage": 15 / 512, "perplexity": 4.2, "vectors": 4096.0}
    high = {**low, "distinct_codes": 100.0, "codebook_usage": 100 / 512}
    with caplog.at_level(logging.WARNING, logger="esq.test_usage"):
        warn_low_usage(context, settings, {"code_radix": 512, "levels": [high]})
        assert not caplog.records
        warn_low_usage(context, settings, {"code_radix": 512, "levels": [high, low]})
    (record,) = caplog.records
    assert "tiny_cnn + simvq used 2.9% of its codebook at level 1" in record.getMessage()
    assert "15 of 512 codes" in record.getMessage() and "could use at most" not in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="esq.test_usage"):
        warn_low_usage(context, settings, {"code_radix": 512, "levels": [{**low, "vectors": 192.0}]})
    assert "the test set's 192 vectors could use at most 37.5%" in caplog.records[0].getMessage()
