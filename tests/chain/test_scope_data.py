"""The data stage decides in the object's project: an actor of another project is refused.

Dataset versions belong to their dataset's project (its name). Sources and imports belong
to no project, so they take a global role: the outsider, whose roles are all bound to
"support", is refused there too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chainkeeper.core.context import Context
from chainkeeper.core.errors import Forbidden
from chainkeeper.data import (
    crawl,
    crawl_to_source,
    create_dataset_version,
    diff_dataset_versions,
    find_dataset_versions,
    find_sources,
    import_csv,
    import_file,
    read_dataset_page,
    release_dataset_version,
    show_dataset_version,
    show_quality_report,
    show_source,
)
from tests.chain.conftest import Projects, ScopeCase, table_counts


def _csv(tmp: Path) -> Path:
    path = tmp / "more.csv"
    path.write_text("text,label\nrates rose again,negative\n", encoding="utf-8")
    return path


CASES: dict[Callable[..., object], ScopeCase] = {
    import_file: lambda ctx, p, tmp: import_file(ctx, _csv(tmp), actor=p.outsider),
    import_csv: lambda ctx, p, tmp: import_csv(ctx, _csv(tmp), actor=p.outsider),
    crawl: lambda ctx, p, tmp: crawl(ctx, "https://example.org/", actor=p.outsider),
    crawl_to_source: lambda ctx, p, tmp: crawl_to_source(ctx, "https://example.org/", actor=p.outsider),
    find_sources: lambda ctx, p, tmp: find_sources(ctx, actor=p.outsider),
    show_source: lambda ctx, p, tmp: show_source(ctx, p.source.id, actor=p.outsider),
    create_dataset_version: lambda ctx, p, tmp: create_dataset_version(ctx, name="news", source_ids=[p.source.id],
                                                                       actor=p.outsider),
    release_dataset_version: lambda ctx, p, tmp: release_dataset_version(ctx, p.dataset.id, actor=p.outsider),
    show_dataset_version: lambda ctx, p, tmp: show_dataset_version(ctx, p.dataset.id, actor=p.outsider),
    find_dataset_versions: lambda ctx, p, tmp: find_dataset_versions(ctx, actor=p.outsider, name="news"),
    read_dataset_page: lambda ctx, p, tmp: read_dataset_page(ctx, p.dataset.id, actor=p.outsider),
    show_quality_report: lambda ctx, p, tmp: show_quality_report(ctx, p.dataset.id, actor=p.outsider),
    diff_dataset_versions: lambda ctx, p, tmp: diff_dataset_versions(ctx, p.dataset.id, p.dataset.id,
                                                                     actor=p.outsider),
}


@pytest.mark.parametrize("function", list(CASES), ids=lambda f: f.__name__)
def test_an_actor_of_another_project_is_refused(ctx: Context, projects: Projects, tmp_path: Path,
                                                function: Callable[..., object]) -> None:
    before = table_counts(ctx)
    with pytest.raises(Forbidden):
        CASES[function](ctx, projects, tmp_path)
    assert table_counts(ctx) == before


def test_a_list_shows_an_outsider_none_of_another_projects_versions(ctx: Context, projects: Projects) -> None:
    assert find_dataset_versions(ctx, actor=projects.outsider) == []
    assert [v.id for v in find_dataset_versions(ctx, actor=projects.insider)] == [projects.dataset.id]


def test_an_actor_of_the_project_may_create_and_read_its_versions(ctx: Context, projects: Projects) -> None:
    version = create_dataset_version(ctx, name="news", source_ids=[projects.source.id], actor=projects.insider)
    assert (version.name, version.version, version.created_by) == ("news", 2, projects.insider.name)
    assert show_dataset_version(ctx, version.id, actor=projects.insider).content_hash == version.content_hash
    total, rows = read_dataset_page(ctx, version.id, actor=projects.insider, limit=2)
    assert total == version.stats["rows"] and len(rows) == 2
    assert diff_dataset_versions(ctx, projects.dataset.id, version.id, actor=projects.insider).counts
    # Another project's dataset stays closed to them.
    with pytest.raises(Forbidden):
        create_dataset_version(ctx, name="support", source_ids=[projects.source.id], actor=projects.insider)
