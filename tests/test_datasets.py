"""Tests of the dataset registry (fer_jax.data.datasets): one module per dataset, each holding
its layout, protocols and fixture writer; the compatibility names of layouts / protocols /
fixtures; no private names imported across the modules."""
import ast
import importlib
from pathlib import Path

import pytest

import fer_jax
from fer_jax.data import datasets, fixtures, layouts, protocols
from fer_jax.data.datasets import base, fixture_kit, schemes
from fer_jax.errors import UserError


def test_every_module_registers_its_datasets_in_module_order():
    registered = []
    for module in datasets.MODULES:
        records = importlib.import_module(f"fer_jax.data.datasets.{module}").DATASETS
        assert records and all(isinstance(d, base.Dataset) for d in records), module
        registered += [d.name for d in records]
    assert datasets.names() == tuple(registered) == tuple(datasets.DATASETS)
    assert len(set(registered)) == len(registered)
    for name in registered:
        assert datasets.get(name) is datasets.DATASETS[name]
        assert datasets.get(name).name == datasets.get(name).layout.name == name
    with pytest.raises(UserError, match="unknown dataset 'nope'; available: cremad, afew"):
        datasets.get("nope")


@pytest.mark.parametrize("name", datasets.names())
def test_each_dataset_is_complete(name):
    dataset = datasets.get(name)
    assert isinstance(dataset.layout, base.Layout)
    assert dataset.protocols and all(isinstance(s, schemes.Spec)
                                     for s in dataset.protocols.values())
    for spec in dataset.protocols.values():
        assert spec.description and "\n" not in spec.description
        stored = {c for _, merged in spec.classes for c in merged}
        assert stored <= set(dataset.layout.class_names)
    fixture = dataset.fixture
    assert isinstance(fixture, fixture_kit.Fixture)
    assert callable(fixture.write) and callable(fixture.bad_labels)
    assert fixture.classes is None or set(fixture.classes) <= set(dataset.layout.class_names)
    assert fixture.max_per_class is None or fixture.max_per_class >= 1
    assert set(fixture.media_defects) <= set(fixture_kit.FRAME_DEFECTS)
    assert fixture.finish is None or callable(fixture.finish)


def test_the_tables_are_built_from_the_registry():
    assert layouts.LAYOUTS == {n: d.layout for n, d in datasets.DATASETS.items()}
    assert protocols.PROTOCOLS == {
        n: {p: s.description for p, s in d.protocols.items()}
        for n, d in datasets.DATASETS.items()}
    assert fixtures.DEFAULT_CLASSES == {"ckplus": layouts.CkPlus.class_names[1:],
                                        "hmdb51": ("brush_hair", "climb_stairs", "wave")}


def test_compatibility_names_are_the_new_homes():
    from fer_jax.data import decoding
    from fer_jax.data.datasets import affectnet, ckplus, cremad, hmdb, samm

    assert layouts.read_frames is decoding.read_frames
    assert layouts.RawVideo is decoding.RawVideo
    assert layouts.UnreadableVideo is decoding.UnreadableVideo
    assert layouts.Layout is base.Layout and layouts.Problem is base.Problem
    assert layouts.CremaD is cremad.CremaD and layouts.CREMAD_SENTENCES is cremad.CREMAD_SENTENCES
    assert layouts.ckplus_landmarks is ckplus.ckplus_landmarks
    assert layouts.HMDB51_CLASSES is hmdb.HMDB51_CLASSES and layouts.SAMM_SHEET == samm.SAMM_SHEET
    assert protocols.EXCLUDED == schemes.EXCLUDED == -1
    assert fixtures.write_video is fixture_kit.write_video
    assert fixtures.affectnet_box is affectnet.affectnet_box
    assert fixtures.SAMM_HEADER is samm.SAMM_HEADER
    assert fixtures.BAD_SUBJECT == fixture_kit.BAD_SUBJECT


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.rsplit(".", 1)[-1].startswith("_")]
    return found


def test_no_private_name_is_imported_across_modules():
    package = Path(fer_jax.__file__).parent
    files = [*sorted((package / "data" / "datasets").glob("*.py")),
             *(package / "data" / f"{m}.py" for m in ("layouts", "protocols", "fixtures",
                                                       "decoding")),
             package / "hashing.py", package / "naturalsort.py"]
    assert {f: _private_imports(f) for f in files} == {f: [] for f in files}
