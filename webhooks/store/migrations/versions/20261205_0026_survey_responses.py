"""Survey responses (NPS, CSAT, CES): the customer's own voice as a fact of the account, one
row per respondent, kind and moment (a resend replaces it), dated facts like interactions.

Revision ID: 20261205_0026
Revises: 20261205_0025
Create Date: 2026-12-05 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0026"
down_revision = "20261205_0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "survey_responses",
        sa.Column(
            "account_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey(
                "accounts.id",
                ondelete="CASCADE",
                name="fk_survey_responses_account_id_accounts",
            ),
            nullable=False,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("respondent", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("comment", sa.String(2000), nullable=True),
        sa.PrimaryKeyConstraint(
            "account_id", "kind", "respondent", "at", name="pk_survey_responses"
        ),
    )


def downgrade() -> None:
    op.drop_table("survey_responses")
