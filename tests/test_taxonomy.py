import pytest

from bonexray.data.taxonomy import Taxonomy, normalise_token
from bonexray.io import params as params_mod


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.from_params(params_mod.load())


def test_regions_are_the_head_order(taxonomy):
    assert taxonomy.regions == ("hand", "elbow", "shoulder", "hip", "leg")
    assert taxonomy.index("hip") == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hand", ("hand", "original")),
        ("XR_WRIST", ("hand", "synonym")),
        ("Fore-Arm", (None, "unknown")),  # not declared: stays unknown, never guessed
        ("forearm", ("hand", "synonym")),
        ("Knee", ("leg", "synonym")),
        ("foot", ("leg", "synonym")),
        ("XR_HUMERUS", ("elbow", "synonym")),
        ("mixed", (None, "ambiguous")),
        ("", (None, "missing")),
        (None, (None, "missing")),
        (float("nan"), (None, "missing")),
        ("spine", (None, "unknown")),
    ],
)
def test_resolve(taxonomy, raw, expected):
    assert taxonomy.resolve(raw) == expected


def test_normalise_token():
    assert normalise_token(" XR_Wrist ") == "wrist"
    assert normalise_token("not-fractured") == "not_fractured"


def test_conflicting_synonym_is_refused():
    bad = {
        "taxonomy": {"regions": ["hand", "leg"], "synonyms": {"hand": ["limb"], "leg": ["limb"]}}
    }
    with pytest.raises(ValueError, match="limb"):
        Taxonomy.from_params(bad)


def test_synonyms_for_undeclared_region_are_refused():
    bad = {"taxonomy": {"regions": ["hand"], "synonyms": {"spine": ["neck"]}}}
    with pytest.raises(ValueError, match="spine"):
        Taxonomy.from_params(bad)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(params_mod.ParamsError, match="nope.yaml"):
        params_mod.load(tmp_path / "nope.yaml")


def test_section_names_the_missing_key():
    with pytest.raises(params_mod.ParamsError, match="split.nope"):
        params_mod.section(params_mod.load(), "split.nope")
