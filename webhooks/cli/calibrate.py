"""`crm-health backtest` and `crm-health suggest`: how well the configuration's score foresaw
the known churn and renewals, and the thresholds and weights those outcomes support, computed
here with a progress bar (the API runs the same as background jobs)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from webhooks import calibration
from webhooks.cli.common import (
    DatabaseOption,
    JsonOption,
    _connection_names,
    _echo_table,
    _require_database,
    _settings,
    _with_session,
)
from webhooks.cli.root import cli
from webhooks.clock import utcnow
from webhooks.errors import InvalidFields
from webhooks.progress import Progress
from webhooks.store.db import AsyncSession

ConnectionOption = Annotated[
    str | None,
    typer.Option(help="Connection whose outcomes are read (default: the configured one)."),
]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="A YAML configuration to test instead of the one in force (as config export "
        "writes it).",
        metavar="FILE",
    ),
]


def _read_config(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        typer.echo(f"{path}: cannot read: {exc}", err=True)
        raise typer.Exit(2) from None
    if not isinstance(document, dict):
        typer.echo(f"{path}: not a configuration (a YAML mapping is expected)", err=True)
        raise typer.Exit(2)
    return document


def _connection(settings: Any, connection: str | None) -> str:
    name = connection or settings.connection_name
    known = _connection_names(settings)
    if name not in known:
        typer.echo(f"unknown connection {name!r}; known: {', '.join(known)}", err=True)
        raise typer.Exit(2)
    return name


def _run(
    settings: Any,
    label: str,
    work: Callable[[AsyncSession, calibration.ProgressFn], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    progress = Progress(label, stream=sys.stderr)

    async def report(done: int, total: int) -> None:
        progress.update(done, total, detail="cases read")

    try:
        result = _with_session(settings, lambda session: work(session, report), migrate=False)
    except InvalidFields as exc:
        typer.echo(f"not computed: {exc.message}", err=True)
        raise typer.Exit(2) from None
    progress.finish()
    return result


def _number(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


@cli.command()
def backtest(
    connection: ConnectionOption = None,
    horizons: Annotated[
        str, typer.Option(help="Days before each outcome to score it at, comma-separated.")
    ] = "30,60,90",
    config: ConfigOption = None,
    resamples: Annotated[
        int, typer.Option(help="Bootstrap resamples for the AUC's 95% interval.")
    ] = 200,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """How well the configuration's score foresaw the known churn and renewals: per horizon,
    the score's AUC with its 95% interval, the at-risk band's precision and recall, each band's
    churn rate and lift, and each indicator's power. Exit status: 0 computed; 2 bad options, a
    configuration that does not validate, or no database."""
    try:
        days = sorted({int(part) for part in horizons.split(",") if part.strip()})
        request = calibration.BacktestRequest(
            config=_read_config(config), horizons=days, resamples=resamples
        )
    except ValueError as exc:
        typer.echo(f"--horizons/--resamples: {exc}".splitlines()[0], err=True)
        raise typer.Exit(2) from None
    settings = _settings(database)
    _require_database(settings)
    name = _connection(settings, connection)
    result = _run(
        settings,
        "Backtest",
        lambda session, report: calibration.run_backtest(
            session, connection=name, request=request, now=utcnow(), progress=report
        ),
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    _print_backtest(result, name)


def _print_backtest(result: dict[str, Any], connection: str) -> None:
    typer.echo(
        f"Backtest of configuration {result['config_version']} on connection {connection}: "
        f"{result['outcomes']} outcomes of {result['accounts']} accounts"
    )
    if not result["outcomes"]:
        typer.echo(
            "No outcomes recorded: send renewed/churned outcomes (CRM deals, `outcome` events, "
            "or `crm-health import outcomes`) and run it again."
        )
        return
    rows: list[tuple[str, ...]] = []
    for horizon in result["horizons"]:
        interval = horizon.get("auc_interval") or {}
        rows.append(
            (
                f"{horizon['days']} d",
                str(horizon["churned"] + horizon["renewed"]),
                str(horizon["churned"]),
                _number(horizon.get("auc")),
                f"{_number(interval.get('low'))}-{_number(interval.get('high'))}",
                _share(horizon["precision"]),
                _share(horizon["recall"]),
                str(horizon["unscored"]),
            )
        )
    typer.echo("")
    _echo_table(
        ("horizon", "cases", "churned", "AUC", "95% interval", "at-risk precision", "recall",
         "unscored"),
        rows,
        numeric={1, 2, 3, 5, 6, 7},
    )  # fmt: skip
    last = result["horizons"][-1]
    typer.echo(f"\nBands {last['days']} days before the outcome:")
    _echo_table(
        ("band", "cases", "churned", "churn rate", "share of churn", "lift"),
        [
            (
                band["band"],
                str(band["cases"]),
                str(band["churned"]),
                _share(band["churn_rate"]),
                _share(band["recall"]),
                _number(band["lift"]),
            )
            for band in last["bands"]
            if band["cases"]
        ],
        numeric={1, 2, 3, 4, 5},
    )
    typer.echo(f"\nIndicators {last['days']} days before the outcome, strongest first:")
    indicators = sorted(last["indicators"], key=lambda item: -(item.get("power") or 0))
    _echo_table(
        ("indicator", "AUC", "power", "healthier when", "configured", "coverage"),
        [
            (
                item["key"],
                _number(item.get("auc")),
                _number(item.get("power")),
                item.get("direction") or "-",
                item["configured"]
                + ("" if item.get("direction") in (None, item["configured"]) else "  (reversed)"),
                _share(item["coverage"]),
            )
            for item in indicators
        ],
        numeric={1, 2, 5},
    )
    typer.echo(
        "\nAUC: the chance that a renewed account scored above a churned one (0.5 is chance, "
        "1 perfect); power: how far from chance, either way; reversed: the data say the "
        "opposite of the thresholds. Method: crm-health backtest --json | jq .method"
    )


@cli.command()
def suggest(
    connection: ConnectionOption = None,
    horizon: Annotated[int, typer.Option(help="Days before each outcome to score it at.")] = 90,
    min_churned: Annotated[
        int, typer.Option(help="Refuse with fewer churned (or renewed) outcomes than this.")
    ] = 30,
    seed: Annotated[int, typer.Option(help="Seed of the cross-validation folds.")] = 0,
    config: ConfigOption = None,
    output: Annotated[
        str | None,
        typer.Option(
            help="Write the suggested configuration to this YAML file, to preview and apply "
            "with `crm-health config apply FILE --dry-run` then without.",
            metavar="FILE",
        ),
    ] = None,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """Thresholds and weights the known outcomes support, fitted on your own churn and
    renewals and cross-validated by account; nothing changes until you apply the candidate.
    Exit status: 0 suggested; 1 refused (too few outcomes, said why); 2 bad options, a
    configuration that does not validate, or no database."""
    try:
        request = calibration.SuggestRequest(
            config=_read_config(config), horizon=horizon, min_churned=min_churned, seed=seed
        )
    except ValueError as exc:
        typer.echo(f"{exc}".splitlines()[0], err=True)
        raise typer.Exit(2) from None
    settings = _settings(database)
    _require_database(settings)
    name = _connection(settings, connection)
    result = _run(
        settings,
        "Suggest",
        lambda session, report: calibration.run_suggest(
            session, connection=name, request=request, now=utcnow(), progress=report
        ),
    )
    if output is not None and result["status"] == "suggested":
        Path(output).write_text(
            yaml.safe_dump(result["config"], sort_keys=False, allow_unicode=True),
            encoding="utf-8",
        )
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print_suggestion(result, output)
    if result["status"] != "suggested":
        raise typer.Exit(1)


def _print_suggestion(result: dict[str, Any], output: str | None) -> None:
    if result["status"] != "suggested":
        typer.echo(f"No suggestion: {result['reason']}")
        return
    cv = result["cross_validation"]
    typer.echo(
        f"Suggestion from {result['cases']} cases ({result['churned']} churned) scored "
        f"{result['horizon']} days before their outcome, configuration "
        f"{result['config_version']}:"
    )
    typer.echo(
        f"  cross-validated AUC ({cv['folds']} folds by account): now "
        f"{_number(cv['current_auc'])}, suggested {_number(cv['suggested_auc'])}"
        + ("" if result["improves"] else " (no better: keep what you have)")
    )
    typer.echo("\nIndicators:")
    _echo_table(
        ("indicator", "AUC", "at risk", "healthy", "weight", "suggested at risk", "healthy",
         "weight", "note"),
        [
            (
                item["key"],
                _number(item.get("auc")),
                f"{item['current']['at_risk']:g}",
                f"{item['current']['healthy']:g}",
                f"{item['current']['weight']:g}",
                f"{item['suggested']['at_risk']:g}",
                f"{item['suggested']['healthy']:g}",
                f"{item['suggested']['weight']:g}",
                item.get("note", ""),
            )
            for item in result["indicators"]
        ],
        numeric={1, 2, 3, 4, 5, 6, 7},
    )  # fmt: skip
    typer.echo("\nSignals:")
    _echo_table(
        ("signal", "AUC", "weight now", "suggested"),
        [
            (
                item["name"],
                _number(item.get("auc")),
                f"{item['current']['weight']:g}",
                f"{item['suggested']['weight']:g}",
            )
            for item in result["signals"]
        ],
        numeric={1, 2, 3},
    )
    for note in result.get("notes", []):
        typer.echo(f"  note: {note}")
    if output is not None:
        typer.echo(
            f"\nThe suggested configuration is in {output}: preview it with "
            f"`crm-health config apply {output} --dry-run`, apply it without --dry-run."
        )
    else:
        typer.echo("\nWrite it to a file with --output FILE to preview and apply it.")
