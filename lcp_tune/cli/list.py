"""`lcp-tune list`: every registry's names, the same lists the options' choices come from."""
from __future__ import annotations

import click

from .options import Command, CHOICES


@click.command("list", cls=Command)
def list_choices() -> None:
    """List the registered architectures, datasets, metrics, forms, searchers and presets."""
    for title, key in (("architectures", "arch"), ("datasets", "data"), ("metrics", "prune.metric"),
                       ("compensation forms", "prune.form"), ("searchers", "search.searcher"),
                       ("schedulers", "search.scheduler"), ("search-space presets", "search.space"),
                       ("methods", "method"), ("training recipes", "recipe")):
        click.echo(f"{title}: {', '.join(CHOICES[key].choices)}")
