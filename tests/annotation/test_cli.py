"""``chainkeeper annotate`` as a user meets it: a steward, two annotators, their refusals."""

from __future__ import annotations

import re
from pathlib import Path

from chainkeeper.annotation.tasks import annotator_queue
from chainkeeper.chain import open_context
from chainkeeper.core.settings import load_settings
from chainkeeper.data.versions import read_dataset_rows
from tests.annotation.conftest import ANA, BEN, make_version
from tests.cli.conftest import Run, home, run  # noqa: F401 (fixtures)
from tests.cli.test_cli import _admin_token
from tests.cli.test_data_cli import _user


def test_a_project_from_schema_to_labelled_version_on_the_command_line(run: Run, home: Path,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    admin = _admin_token(run)
    tokens = {name: _user(run, admin, name, role) for name, role in (
        ("stella", "data_steward"), ("ana", "annotator"), ("ben", "annotator"), ("erin", "ml_engineer"))}
    store = open_context(load_settings({}, home=home))
    try:
        version = make_version(store, tmp_path / "sample")
        gold = {r["row_id"]: r["label"] for r in read_dataset_rows(store, version.id).to_pylist()}
        labels = sorted(set(gold.values()))
        code, out, err = run("annotate", "schema", "intents", *[a for lab in labels for a in ("-l", lab)],
                             token=tokens["stella"])
        assert code == 0, err
        schema_id = re.search(r"\(id (\d+), single\)", out).group(1)  # type: ignore[union-attr]
        code, out, err = run("annotate", "create", "cli", "--dataset", str(version.id), "--schema", schema_id,
                             "--overlap-k", "2", "--overlap-fraction", "0.2", token=tokens["stella"])
        assert code == 0 and "project cli (id 1)" in out, err
        code, _, err = run("annotate", "create", "nothing", "--dataset", str(version.id), "--schema", schema_id,
                           "--text-contains", "zzz-no-such-text", token=tokens["stella"])
        assert code == 2 and "would be empty" in err
        code, out, _ = run("annotate", "schema", "intents", *[a for lab in labels for a in ("-l", lab)],
                           token=tokens["stella"])
        v2 = re.search(r"intents v2 \(id (\d+),", out).group(1)  # type: ignore[union-attr]
        code, out, _ = run("annotate", "reschema", "1", "--schema", v2, token=tokens["stella"])
        assert code == 0 and f"schema id {v2}" in out
        code, out, _ = run("annotate", "assign", "1", "-a", "ana", "-a", "ben", token=tokens["stella"])
        assert code == 0 and "to ana" in out
        code, _, err = run("annotate", "create", "x", "--dataset", str(version.id), "--schema", schema_id,
                           token=tokens["ana"])
        assert code == 5 and "annotation.manage" in err

        queues = {a.name: annotator_queue(store, 1, a) for a in (ANA, BEN)}
        code, out, _ = run("annotate", "queue", "1", token=tokens["ana"])
        assert code == 0 and str(queues["ana"][0].item_id) in out
        theirs = next(t for t in queues["ben"] if t.item_id not in {x.item_id for x in queues["ana"]})
        code, _, err = run("annotate", "label", "1", str(theirs.item_id), "lost_card", "--version", "0",
                           token=tokens["ana"])
        assert code == 5 and "not assigned to ana" in err
        first = queues["ana"][0]
        code, _, err = run("annotate", "label", "1", str(first.item_id), "pizza", "--version", "0",
                           token=tokens["ana"])
        assert code == 2 and "'pizza' is not in schema intents v2" in err
        for who, tasks in queues.items():
            for t in tasks:
                code, out, err = run("annotate", "label", "1", str(t.item_id), gold[t.row_id], "--version", "0",
                                     token=tokens[who])
                assert code == 0 and "version 1" in out, err
        code, _, err = run("annotate", "label", "1", str(first.item_id), "lost_card", "--version", "0",
                           token=tokens["ana"])
        assert code == 2 and "changed since you loaded it" in err and "Reload" in err
        code, out, _ = run("annotate", "figures", "1", token=tokens["stella"])
        assert code == 0 and "Cohen's kappa 1.000" in out and "ana" in out
        code, out, _ = run("annotate", "disputes", "1", token=tokens["stella"])
        assert code == 0 and "nothing waits" in out
        code, out, err = run("annotate", "export", "1", token=tokens["stella"])
        assert code == 0 and "intents v2" in out and f"{len(gold)} labelled rows" in out, err
        new_id = re.search(r"\(id (\d+)\)", out).group(1)  # type: ignore[union-attr]
        code, out, _ = run("annotate", "trace", new_id, "0", token=tokens["erin"])
        assert code == 0 and "annotation project cli" in out and "answered" in out
    finally:
        store.close()
