"""The simulated A/B test's config: YAML section `ab`."""

from __future__ import annotations

from dataclasses import dataclass

from learnkit.core.configload import option


@dataclass
class AbConfig:
    control_share: float = option(0.2, help="share of users in control (the baseline ranker)")
    treatment_share: float = option(0.2, help="share of users in treatment (the LEARN ranker)")
    salt: str = option("learn-kit-ab", help="salt of the user hash that assigns arms")
    top_k: int = option(5, help="items shown per request")
    widen: int = option(
        0,
        help=(
            "catalog items added to each request, scored by both rankers' SavedModels; only the simulated "
            "estimator can judge them (no logged outcome)"
        ),
    )
    simulated_seeds: int = option(5, help="outcome draws averaged by the simulated estimator")
    bootstrap: int = option(1000, help="user resamples for the lift intervals")
    aa_runs: int = option(200, help="salts of the A/A check")
    cuped: bool = option(True, help="adjust for each user's pre-period conversions")

    def __post_init__(self) -> None:
        if min(self.control_share, self.treatment_share) <= 0 or self.control_share + self.treatment_share > 1:
            raise ValueError("control_share and treatment_share must be positive with a sum <= 1")
        if self.top_k < 1 or self.aa_runs < 1 or self.simulated_seeds < 1 or self.bootstrap < 10 or self.widen < 0:
            raise ValueError("top_k, aa_runs and simulated_seeds must be >= 1, widen >= 0, bootstrap >= 10")
