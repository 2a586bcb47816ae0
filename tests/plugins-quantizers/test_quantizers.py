"""esq-quantizers: protocol, options, bits, k-means, gradients, state, bad input, the library."""

from __future__ import annotations

import math

import pytest
import torch

import esq
from esq import ConfigError, DataError
from esq.testing import check_quantizer

SMALL = {
    "vq": {"codebook_size": 16},
    "fsq": {"levels": [5, 4, 3]},
    "lfq": {"codebook_size": 16},
    "rvq": {"codebook_size": 8, "num_quantizers": 3},
    "residual_fsq": {"levels": [5, 3], "num_quantizers": 2},
    "simvq": {"codebook_size": 16},
    "identity": {},
}


def create(name: str, input_dim: int = 16, **options):
    return esq.registry("quantizers").create(name, input_dim=input_dim, **options)


def features(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_quantizer_passes_the_conformance_checks(name):
    check_quantizer(esq.registry("quantizers").spec(name), input_dim=16, **SMALL[name])


@pytest.mark.parametrize(
    ("name", "options", "bits"),
    [
        ("vq", {"codebook_size": 512}, 9.0),
        ("fsq", {"levels": [8, 5, 5, 5]}, 3 + 3 * math.log2(5)),
        ("fsq", {"codebook_size": 2**12}, math.log2(7) + 4 * math.log2(5)),
        ("lfq", {"codebook_size": 2**12}, 12.0),
        ("rvq", {"num_quantizers": 4, "codebook_size": 256}, 32.0),
        ("residual_fsq", {"num_quantizers": 3, "levels": [8, 5, 5, 5]}, 3 * (3 + 3 * math.log2(5))),
        ("simvq", {"codebook_size": 1024}, 10.0),
        ("identity", {}, 32.0 * 768),
    ],
)
def test_bits_per_vector_are_exact(name, options, bits):
    assert create(name, input_dim=768, **options).bits_per_vector == pytest.approx(bits, rel=1e-12)


def test_compression_ratio_is_the_figure_users_know():
    assert create("vq", input_dim=768, codebook_size=512).compression_ratio(768) == pytest.approx(2730.67, abs=0.01)


@pytest.mark.parametrize(("size", "levels"), [(2**8, [8, 6, 5]), (2**10, [8, 5, 5, 5]), (2**16, [8, 8, 8, 5, 5, 5])])
def test_fsq_codebook_size_selects_the_papers_levels(size, levels):
    assert create("fsq", codebook_size=size).levels == levels


def one_training_step(quantizer, seed: int = 0):
    torch.manual_seed(seed)
    quantizer.train()
    output = quantizer(features(4, 32, quantizer.input_dim, seed=seed))
    return output, {key: value.clone() for key, value in quantizer.state_dict().items()}


def library_facts(module) -> tuple:
    """The codebook as the library module itself has it: size, levels, number of quantizers."""
    levels = getattr(module, "_levels", getattr(module, "levels", None))
    return (
        getattr(module, "codebook_size", None),
        tuple(levels.tolist()) if torch.is_tensor(levels) else levels,
        getattr(module, "num_quantizers", None),
    )


OPTION_CHANGES = [
    ("vq", "codebook_size", 16, 32, "bits"),
    ("vq", "decay", 0.5, 0.99, "state"),
    ("vq", "commitment_weight", 0.25, 1.0, "loss"),
    ("vq", "threshold_ema_dead_code", 0, 4, "state"),
    ("fsq", "levels", [5, 5], [8, 5], "bits"),
    ("fsq", "codebook_size", 2**8, 2**10, "bits"),
    ("lfq", "codebook_size", 16, 64, "bits"),
    ("lfq", "entropy_loss_weight", 0.1, 0.5, "loss"),
    ("lfq", "diversity_gamma", 1.0, 2.0, "loss"),
    ("lfq", "spherical", False, True, "output"),
    ("rvq", "num_quantizers", 2, 4, "bits"),
    ("rvq", "codebook_size", 8, 16, "bits"),
    ("rvq", "shared_codebook", False, True, "state"),
    ("rvq", "commitment_weight", 0.25, 1.0, "loss"),
    ("rvq", "quantize_dropout", False, True, "output"),
    ("rvq", "decay", 0.5, 0.99, "state"),
    ("rvq", "kmeans_init", False, True, "state"),
    ("vq", "kmeans_init", False, True, "state"),
    ("vq", "bottleneck_dim", 8, 4, "state"),
    ("residual_fsq", "num_quantizers", 2, 3, "bits"),
    ("residual_fsq", "levels", [5, 3], [5, 5], "bits"),
    ("simvq", "codebook_size", 16, 32, "bits"),
    ("simvq", "commitment_weight", 1.0, 2.0, "loss"),
]


@pytest.mark.parametrize(("name", "option", "first", "second", "observed"), OPTION_CHANGES)
def test_every_option_takes_effect(name, option, first, second, observed):
    results = []
    for value in (first, second):
        torch.manual_seed(0)
        quantizer = create(name, **{option: value})
        output, state = one_training_step(quantizer)
        results.append(
            {
                "bits": (quantizer.bits_per_vector, library_facts(quantizer.library)),
                "loss": output.loss.item(),
                "output": output.quantized.detach(),
                "state": state,
            }
        )
    a, b = results
    if observed == "state":
        assert a["state"].keys() != b["state"].keys() or any(
            a["state"][k].shape != b["state"][k].shape or not torch.equal(a["state"][k], b["state"][k])
            for k in a["state"]
        )
    elif observed == "output":
        assert not torch.equal(a["output"], b["output"])
    elif observed == "bits":  # the wrapper's count and the library's own codebook both change
        assert a["bits"][0] != b["bits"][0] and a["bits"][1] != b["bits"][1]
    else:
        assert a[observed] != b[observed]


def codebooks(quantizer):
    return [m for m in quantizer.modules() if isinstance(getattr(m, "initted", None), torch.Tensor)]


@pytest.mark.parametrize("name", ["vq", "rvq"])
def test_kmeans_init_learns_from_training_data_only(name):
    torch.manual_seed(0)
    quantizer = create(name, codebook_size=8, kmeans_init=True).eval()
    before = {key: value.clone() for key, value in quantizer.state_dict().items()}
    quantizer(features(2, 20, 16))  # a validation sanity check before training
    quantizer.train()
    quantizer.encode(features(2, 20, 16, seed=2))  # encoding is not training either
    after = quantizer.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert not any(bool(codebook.initted) for codebook in codebooks(quantizer))
    quantizer(features(2, 20, 16, seed=1))
    assert all(bool(codebook.initted) for codebook in codebooks(quantizer))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_encode_changes_no_state_even_in_training_mode(name):
    torch.manual_seed(0)
    quantizer = create(name, **SMALL[name]).train()
    before = {key: value.clone() for key, value in quantizer.state_dict().items()}
    quantizer.encode(features(3, 30, 16))
    assert quantizer.training
    assert all(torch.equal(value, quantizer.state_dict()[key]) for key, value in before.items())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_codes_lie_in_the_codebook_and_eval_loss_is_zero(name):
    quantizer = create(name, **SMALL[name]).eval()
    output = quantizer(features(2, 50, 16))
    assert output.loss.item() == 0.0
    if name != "identity":
        assert 0 <= int(output.codes.min()) and int(output.codes.max()) < quantizer.code_radix


def test_rvq_loss_is_the_sum_of_the_levels_losses():
    from vector_quantize_pytorch import ResidualVQ

    torch.manual_seed(0)
    ours = create("rvq", input_dim=8, bottleneck_dim=8, num_quantizers=3, codebook_size=16, threshold_ema_dead_code=0)
    library = ResidualVQ(dim=8, num_quantizers=3, codebook_size=16, decay=0.99, commitment_weight=0.25)
    library.load_state_dict(ours.library.state_dict())
    x = features(2, 30, 8)
    _, _, losses = library.train()(x)
    assert ours.train()(x).loss.item() == pytest.approx(losses.sum().item(), rel=1e-6)
    assert losses.numel() == 3


def test_usage_stats_average_levels_and_ignore_dropped_codes():
    from esq_quantizers.base import usage_stats

    codes = torch.tensor([[[0, 1], [1, 1], [2, -1], [3, -1]]])  # level 0 uses 4 codes; level 1 one code
    stats = usage_stats(codes, codebook_size=4)
    assert stats == {
        "codebook_usage": (1.0 + 0.25) / 2,
        "perplexity": pytest.approx((4.0 + 1.0) / 2),
        "dead_codes": (0 + 3) / 2,
    }


@pytest.mark.parametrize("name", sorted(SMALL))
def test_usage_stats_are_counted_in_eval_only(name):
    quantizer = create(name, **SMALL[name])
    assert quantizer.train()(features(2, 20, 16)).stats == {}
    stats = quantizer.eval()(features(2, 20, 16)).stats
    if name != "identity":
        assert set(stats) == {"codebook_usage", "perplexity", "dead_codes"} and 0 < stats["codebook_usage"] <= 1


def test_options_are_the_constructor_parameters_read_back():
    assert create("vq", codebook_size=16).options == {
        "input_dim": 16,
        "bottleneck_dim": 64,
        "codebook_size": 16,
        "decay": 0.99,
        "commitment_weight": 0.25,
        "kmeans_init": False,
        "threshold_ema_dead_code": 2,
    }
    # fsq's codebook_size only chooses the levels, which the options record
    assert create("fsq", codebook_size=2**8).options == {"input_dim": 16, "bottleneck_dim": 64, "levels": [8, 6, 5]}
    assert create("residual_fsq", codebook_size=2**8).options["levels"] == [8, 6, 5]


def test_identity_accepts_bottleneck_dim_and_returns_a_copy():
    quantizer = create("identity", bottleneck_dim=64)
    x = features(1, 3, 16)
    output = quantizer(x)
    assert torch.equal(output.quantized, x) and output.quantized.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("name", ["vq", "fsq", "lfq", "rvq", "residual_fsq", "simvq"])
def test_gradient_reaches_the_input_straight_through(name):
    quantizer = create(name, **SMALL[name]).train()
    x = features(2, 6, 16).requires_grad_()
    quantizer(x).quantized.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_state_dict_round_trip_rebuilds_the_same_quantizer(name):
    torch.manual_seed(0)
    trained = create(name, **SMALL[name])
    one_training_step(trained)
    torch.manual_seed(1)
    restored = esq.registry("quantizers").create(trained.name, **trained.options)
    restored.load_state_dict(trained.state_dict())
    x = features(2, 5, 16, seed=3)
    assert torch.equal(trained.eval()(x).quantized, restored.eval()(x).quantized)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_runs_are_deterministic_under_a_seed(name):
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        output, _ = one_training_step(create(name, **SMALL[name]), seed=7)
        outputs.append(output.quantized.detach())
    assert torch.equal(*outputs)


def test_fsq_matches_the_library_module_exactly():
    from vector_quantize_pytorch import FSQ

    ours = create("fsq", input_dim=4, bottleneck_dim=4, levels=[8, 5, 5, 5]).eval()
    library = FSQ(levels=[8, 5, 5, 5], dim=4)
    x = features(2, 9, 4)
    expected, indices = library(x)
    assert torch.equal(ours(x).quantized, expected) and torch.equal(ours.encode(x), indices.long())


def test_vq_matches_the_library_module_with_the_same_codebook():
    from vector_quantize_pytorch import VectorQuantize

    ours = create("vq", input_dim=8, bottleneck_dim=8, codebook_size=32).eval()
    library = VectorQuantize(
        dim=8, codebook_size=32, decay=0.99, commitment_weight=0.25, threshold_ema_dead_code=2
    ).eval()
    library.load_state_dict(ours.library.state_dict())
    x = features(2, 9, 8)
    expected, indices, _ = library(x)
    assert torch.equal(ours.encode(x), indices.long())
    assert torch.allclose(ours(x).quantized, expected, atol=1e-6)


BAD_INPUT = [
    (lambda: create("vq")(features(2, 5, 12)), DataError, "expected feature dimension 16 in the last axis, got 12"),
    (lambda: create("vq")(features(2, 12, 3, 3)), DataError, "in the channel (second) axis, got 12"),
    (lambda: create("lfq", codebook_size=1000), ConfigError, "power of two, got 1000; nearest: 512 or 1024"),
    (lambda: create("fsq", levels=[8, 1]), ConfigError, "fsq: levels[1] must be an integer"),
    (lambda: create("fsq", levels=[]), ConfigError, "levels must be a non-empty list of integers of at least 2"),
    (
        lambda: create("fsq", codebook_size=3000),
        ConfigError,
        "codebook_size must be one of 256, 1024, 4096, 16384, 65536, got 3000; or give levels=[...]",
    ),
    (lambda: create("vq")(torch.full((1, 2, 16), float("nan"))), DataError, "NaN or infinite"),
    (lambda: create("vq", codebook_size=0), ConfigError, "vq: codebook_size must be an integer"),
    (lambda: create("simvq", codebook_size=1), ConfigError, "simvq: codebook_size must be an integer"),
    (lambda: create("rvq", num_quantizers=0), ConfigError, "rvq: num_quantizers must be an integer"),
    (lambda: create("vq", kmeans_init="yes"), ConfigError, "vq: kmeans_init must be true or false, got 'yes'"),
    (lambda: create("vq", codebook_sise=8), ConfigError, "has no option 'codebook_sise' (did you mean"),
    (
        lambda: create("rvq", decay=1.5),
        ConfigError,
        "rvq: decay must be a finite number greater than 0 and less than 1",
    ),
    (lambda: create("vq", commitment_weight=-1), ConfigError, "vq: commitment_weight must be a finite number"),
    (lambda: create("rvq")(features(2, 0, 16)), DataError, "the features are empty (shape (2, 0, 16))"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUT)
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)


TOO_MANY_CODES = [
    ("vq", {"codebook_size": 2**40}, "vq: codebook_size 1099511627776 would make a codebook"),
    ("rvq", {"codebook_size": 2**30}, "rvq: codebook_size 1073741824 would make a codebook"),
    ("simvq", {"codebook_size": 2**40}, "simvq: codebook_size 1099511627776 would make a codebook"),
    ("lfq", {"codebook_size": 2**70}, "lfq: codebook_size 1180591620717411303424 would make a codebook"),
    ("fsq", {"levels": [2, 2**40]}, "fsq: levels [2, 1099511627776] make a codebook of 2199023255552 codes"),
    ("fsq", {"levels": [2] * 40}, "make a codebook of 1099511627776 codes"),
    ("residual_fsq", {"levels": [65536, 65536]}, "residual_fsq: levels [65536, 65536] make a codebook"),
]


@pytest.mark.parametrize(("name", "options", "message"), TOO_MANY_CODES)
def test_a_codebook_too_large_to_hold_is_refused_before_anything_is_allocated(name, options, message):
    # on the meta device, as the pipelines' checks build it: before the fix this passed, and the
    # run itself failed allocating terabytes (or overflowing int32 in the library)
    with pytest.raises(ConfigError, match="at most 16777216") as raised:
        esq.registry("quantizers").check(name, input_dim=16, **options)
    assert message in str(raised.value)


def test_the_largest_codebook_allowed_still_builds():
    quantizer = create("fsq", levels=[2**12, 2**12])
    assert quantizer.bits_per_vector == 24.0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_training_counts_every_codebook_level_of_each_quantizer_and_none_of_identity(name):
    from esq.builtin.training.codebook_usage import CodebookUsage, code_layout

    quantizer = create(name, **SMALL[name]).eval()
    layout = code_layout(quantizer)
    if name == "identity":  # its "codes" are its float features: no codebook to count
        assert layout is None
        return
    radix, levels = layout
    assert levels * math.log2(radix) == pytest.approx(quantizer.bits_per_vector)
    x = features(3, 16, 4, 4)
    codes = quantizer(x).codes
    usage = CodebookUsage(radix, levels)
    usage.update(codes)
    result = usage.compute()
    per_level = codes.reshape(-1, levels)
    assert [level["distinct_codes"] for level in result["levels"]] == [
        per_level[:, level].unique().numel() for level in range(levels)
    ]
    assert all(level["vectors"] == 3 * 4 * 4 for level in result["levels"])
