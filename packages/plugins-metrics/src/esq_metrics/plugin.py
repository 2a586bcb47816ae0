"""The hooks esq calls. NumPy, scikit-learn and torch load only when a component is built."""

from __future__ import annotations

from esq import DegradationSpec, MetricSpec, hookimpl, lazy

INF = float("inf")
SIMILARITY_METRICS = [
    (
        "cka",
        "cka:CKA",
        "Centered kernel alignment, linear (or RBF, debiased), in feature space",
        (-1.0, 1.0),
    ),
    (
        "pwcca",
        "pwcca:PWCCA",
        "Projection-weighted CCA, as Google's SVCCA reference computes it",
        (0.0, 1.0),
    ),
    ("geometry", "geometry:Geometry", "Spearman correlation of the same pairs' distances", (-1.0, 1.0)),
    ("rsa", "rsa:RSA", "Spearman correlation of the RDMs (1 − Pearson between samples)", (-1.0, 1.0)),
    (
        "relational",
        "relational:Relational",
        "RKD distance relation: Pearson of mean-normalised pairwise distances",
        (-1.0, 1.0),
    ),
    ("jaccard_knn", "jaccard_knn:JaccardKNN", "Mean Jaccard index of the k-NN sets (cosine, k 10)", (0.0, 1.0)),
]
DISTRIBUTION_METRICS = [
    ("fid", "fid:FID", "Fréchet distance between Gaussian fits (symmetric eigen square root)", (0.0, INF)),
    (
        "kid",
        "kid:KID",
        "Kernel inception distance: unbiased MMD², cubic polynomial kernel, subsets",
        (-INF, INF),
    ),
    (
        "cmmd",
        "cmmd:CMMD",
        "MMD² with a Gaussian RBF kernel (σ 10) on L2-normalised embeddings, ×1000",
        (-INF, INF),
    ),
    (
        "gmm_mahalanobis",
        "gmm:GMMMahalanobis",
        "Mean Mahalanobis distance to the closest component of a GMM fitted on the reference",
        (0.0, INF),
    ),
    ("gmm_nll", "gmm:GMMNLL", "Mean negative log-likelihood under a GMM fitted on the reference", (-INF, INF)),
    (
        "topological_geometry_score",
        "topological:TopologicalGeometryScore",
        "Geometry Score (Khrulkov & Oseledets): mean relative living times of H1, witness complexes (extra: topology)",
        (0.0, 2.0),
    ),
    (
        "kde_nll",
        "kde:KDENLL",
        "Mean negative log-likelihood under a Gaussian KDE fitted on the reference",
        (-INF, INF),
    ),
]
DEGRADATIONS = [
    ("gaussian_blur", "degradations:GaussianBlur", "Gaussian blur, level σ in pixels"),
    ("gaussian_noise", "degradations:GaussianNoise", "Additive Gaussian noise, level = std on the 0–255 scale"),
    (
        "blur_contrast",
        "degradations:BlurContrast",
        "Gaussian blur then contrast reduction; level = step of (σ, contrast factor) pairs",
    ),
    (
        "aliasing",
        "degradations:Aliasing",
        "Nearest-neighbour down-sampling by a factor (no antialiasing), then up-sampling",
    ),
    ("jpeg", "degradations:JPEG", "JPEG compression, level = 100 − quality"),
]


@hookimpl
def esq_metrics() -> list[MetricSpec]:
    # similarity: higher is better (1 for identical features); distribution: lower is better
    kinds = (("similarity", True, SIMILARITY_METRICS), ("distribution", False, DISTRIBUTION_METRICS))
    return [
        MetricSpec(
            name=name,
            factory=lazy(f"esq_metrics.{target}"),
            summary=summary,
            kind=kind,
            higher_is_better=higher_is_better,
            range=value_range,
        )
        for kind, higher_is_better, metrics in kinds
        for name, target, summary, value_range in metrics
    ]


@hookimpl
def esq_degradations() -> list[DegradationSpec]:
    return [
        DegradationSpec(name=name, factory=lazy(f"esq_metrics.{target}"), summary=summary)
        for name, target, summary in DEGRADATIONS
    ]
