"""Organisation names → stable keys and display names (apps.monitor.entities)."""

from __future__ import annotations

import json

import pytest

from chainkeeper.apps.monitor.entities import EntityNames, clean_surface, entity_key
from chainkeeper.core.errors import InvalidInput


@pytest.mark.parametrize("names, key", [
    (["Nokia Oyj", "NOKIA", "Nokia Corporation", "Nokia Corp.", "nokia oyj.", "ＮＯＫＩＡ", " Nokia  "], "nokia"),
    (["Apple Inc.", "Apple", "APPLE INC", "Apple Incorporated"], "apple"),
    (["Tencent Holdings Ltd", "Tencent Holdings", "Tencent", "Tencent Holdings Limited"],
     "tencent"),
    (["腾讯控股有限公司", "腾讯控股", "腾讯", "腾讯控股有限公司 ", "腾讯（控股）有限公司"], "腾讯"),
    (["中国平安保险(集团)股份有限公司", "中国平安保险集团股份有限公司", "中国平安保险"], "中国平安保险"),
    (["トヨタ自動車株式会社", "株式会社トヨタ自動車", "トヨタ自動車"], "トヨタ自動車"),
    (["The Coca-Cola Company", "Coca Cola Co.", "COCA-COLA"], "coca cola"),
    (["JPMorgan Chase & Co.", "JPMorgan Chase and Co", "JPMorgan Chase"], "jpmorgan chase"),
    (["Société Générale S.A.", "Societe Generale SA", "SOCIETE GENERALE"], "societe generale"),
    (["Cemex S.A.B. de C.V.", "Cemex"], "cemex"),
    (["Volvo AB (publ)", "Volvo Group", "VOLVO"], "volvo"),
    (["Siemens AG", "SIEMENS", "Siemens A.G."], "siemens"),
    (["HSBC Holdings plc", "HSBC"], "hsbc"),
    (["McDonald's Corp", "McDonalds"], "mcdonalds"),
    (["Rolls-Royce Holdings plc", "Rolls Royce"], "rolls royce"),
    (["AT&T Inc.", "AT & T"], "at and t"),
])
def test_variants_of_one_organisation_share_a_key(names: list[str], key: str) -> None:
    assert {entity_key(n) for n in names} == {key}


@pytest.mark.parametrize("a, b", [
    ("Apple Inc.", "Apple Hospitality REIT"),
    ("Ford Motor Company", "Ford Motor Credit Company"),
    ("Deutsche Bank AG", "Deutsche Börse AG"),
    ("Alphabet Inc.", "Google LLC"),
    ("平安银行股份有限公司", "中国平安保险(集团)股份有限公司"),
    ("Nokia Oyj", "Nokian Tyres plc"),
])
def test_different_organisations_keep_different_keys(a: str, b: str) -> None:
    assert entity_key(a) != entity_key(b)


def test_names_are_never_reduced_to_nothing() -> None:
    assert entity_key("Inc.") == "inc"
    assert entity_key("The Group") == "group"
    assert entity_key("集团") == "集团"
    assert entity_key("Co-operative Bank") == "co operative bank"
    assert entity_key("The") == "the"


@pytest.mark.parametrize("bad", ["", "   ", "...", "—", 42, None, "x" * 301])
def test_bad_names_raise_invalid_input(bad: object) -> None:
    with pytest.raises(InvalidInput):
        entity_key(bad)  # type: ignore[arg-type]


def test_surface_form_keeps_case_and_suffix_but_not_width_or_spacing() -> None:
    assert clean_surface("  ＮＯＫＩＡ  Oyj, ") == "NOKIA Oyj"
    assert clean_surface("“Apple Inc.”") == "Apple Inc."


def test_entity_names_display_the_most_frequent_form_and_round_trip() -> None:
    names = EntityNames()
    keys = names.add_many(["NOKIA OYJ", "Nokia", "Nokia", "Nokia Corporation", "Apple Inc.", "Apple", "Apple Inc."])
    assert keys[:4] == ["nokia"] * 4 and keys[4:] == ["apple"] * 3
    assert names.display("nokia") == "Nokia"
    assert names.display("apple") == "Apple Inc."
    assert names.forms("nokia") == [("Nokia", 2), ("NOKIA OYJ", 1), ("Nokia Corporation", 1)]
    assert names.display("unknown key") == "unknown key" and names.forms("unknown key") == []
    assert len(names) == 2 and "nokia" in names and names.keys() == ["apple", "nokia"]
    names.add("ＡＰＰＬＥ", count=5)
    assert names.display("apple") == "APPLE"

    again = EntityNames.from_state(json.loads(json.dumps(names.state())))
    assert again.state() == names.state() and again.display("apple") == "APPLE"
    with pytest.raises(InvalidInput):
        EntityNames.from_state({"version": 2})
    with pytest.raises(InvalidInput):
        EntityNames.from_state({"version": 1, "forms": {"nokia": {"Nokia": -1}}})
    with pytest.raises(InvalidInput):
        names.add("Nokia", count=0)
