"""HealthConfig: every threshold, weight and band edge an admin can tune, with defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Threshold(BaseModel):
    """Raw value at which an indicator scores 0 (at_risk) and 100 (healthy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at_risk: float
    healthy: float

    @model_validator(mode="after")
    def _distinct(self) -> Threshold:
        if self.at_risk == self.healthy:
            raise ValueError("at_risk and healthy must differ")
        return self


class Bands(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    healthy_min: float = Field(default=70, ge=0, le=100)
    at_risk_below: float = Field(default=40, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.at_risk_below > self.healthy_min:
            raise ValueError("at_risk_below must not exceed healthy_min")
        return self


class HealthConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    recency_days: Threshold = Threshold(at_risk=14, healthy=3)
    bands: Bands = Bands()
