"""Typed hyperparameters: every packaged YAML loads, errors name the file and the key, hashes are the old ones."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from editcollapse.editors.alphaedit.hparams import AlphaEditHparams
from editcollapse.editors.api import METHODS, hparams_path, load_hparams, load_hparams_file, method_spec
from editcollapse.editors.ft.hparams import FTHparams
from editcollapse.editors.hparams import HparamsError
from editcollapse.editors.memit.hparams import MEMITHparams
from editcollapse.editors.mend.hparams import MENDHparams
from editcollapse.editors.rome.hparams import ROMEHparams

# Computed with the plain-dict hyperparameters before the typed classes existed (commit 3234e7f):
# hparams_hash(load_hparams(method, stem)), the same with model_revision "rev-1" (what hparams_for adds),
# and for MEND the store's training hash with "rev-1". Stored hparams_hash values and MEND store keys
# must not change unless a setting does (ROME on GPT-2-XL: mom2_adjustment as EasyEdit has it, 2026-12-03).
# AlphaEdit came later: its files' hashes as they were added.
OLD_HASHES = {
    ("rome", "gpt-j-6b"): ("d7eec27253e04f8f", "46c7fb2f3ad707dd", None),
    ("rome", "gpt2-xl"): ("c4bc70415bf6d374", "b71aedc1ae3594c1", None),  # mom2_adjustment false since 2026-12-03
    ("rome", "llama-2-7b"): ("ea23a717c8400f3d", "5309bc47bff084f8", None),
    ("rome", "smollm2-135m"): ("18a7854687611883", "b75547036890ea65", None),
    ("rome", "tiny"): ("78a8fced96ba8f94", "e0cad2680670ddc2", None),
    ("r-rome", "gpt-j-6b"): ("d7eec27253e04f8f", "46c7fb2f3ad707dd", None),
    ("r-rome", "gpt2-xl"): ("c4bc70415bf6d374", "b71aedc1ae3594c1", None),
    ("r-rome", "llama-2-7b"): ("ea23a717c8400f3d", "5309bc47bff084f8", None),
    ("r-rome", "smollm2-135m"): ("18a7854687611883", "b75547036890ea65", None),
    ("r-rome", "tiny"): ("78a8fced96ba8f94", "e0cad2680670ddc2", None),
    ("memit", "gpt-j-6b"): ("c8fea45b35525a27", "69283cadbda3ef54", None),
    ("memit", "gpt2-xl"): ("345139a92c8fe533", "e0b0dce996219b47", None),
    ("memit", "llama-2-7b"): ("f94b495a6de9e9b7", "25b4867487f41617", None),
    ("memit", "smollm2-135m"): ("d9bebf05e3208f73", "79d1efa0833ddbef", None),
    ("memit", "tiny"): ("9872be725b4f171d", "09fc3e5e35139dc4", None),
    ("alphaedit", "gpt-j-6b"): ("d5630703440811c9", "946a8afd26e8799e", None),
    ("alphaedit", "gpt2-xl"): ("5ca5b8bd89ce4a28", "701f82a481beedcd", None),
    ("alphaedit", "llama-2-7b"): ("693a9d39ecfe4ba8", "f8397a6d772f6b8a", None),
    ("alphaedit", "smollm2-135m"): ("004a2b8b60894a10", "72e95f0cbb1fa65c", None),
    ("alphaedit", "tiny"): ("882457f4bae5ebb8", "7a85e5d7e5ec7353", None),
    ("ft", "gpt-j-6b"): ("9583b5f0d8f2660b", "fc21a9e8509feea5", None),
    ("ft", "gpt2-xl"): ("757991fde789177f", "11b6bf237ee27150", None),
    ("ft", "llama-2-7b"): ("80cf5bd590e53b7b", "1ee8e4a63b24e53a", None),
    ("ft", "smollm2-135m"): ("308b50634a1d3db2", "baef535cb20e1a82", None),
    ("ft", "tiny"): ("315f5f54a18dbc7f", "e415f7f0bb8c8d61", None),
    ("ft-l-inf", "gpt-j-6b"): ("0de1da88f1dea9d5", "c316d7cb022c28b4", None),
    ("ft-l-inf", "gpt2-xl"): ("ef7dd541deca91e7", "82014299493ce278", None),
    ("ft-l-inf", "llama-2-7b"): ("66b2e0220aa88778", "8ede4b48138c1ec5", None),
    ("ft-l-inf", "smollm2-135m"): ("2f412019ca15bc12", "c4950ca11e8e89b7", None),
    ("ft-l-inf", "tiny"): ("8345c9d4887baf06", "6e49795566e151d5", None),
    ("mend", "gpt-j-6b"): ("aacd541252b4e0de", "e16af6be510a5089", "2aff0c7a34726194"),
    ("mend", "gpt2-xl"): ("20405d5d8591da87", "8abccaa842b24f1d", "b0afbff5402e6b68"),
    ("mend", "llama-2-7b"): ("dd5df2d27c3445d1", "49316f983961c85a", "dcac3f2938bb05e0"),
    ("mend", "smollm2-135m"): ("27140adb258d069c", "9504ab92b87baa44", "38c6040c64231556"),
    ("mend", "tiny"): ("d7f35ee0d18a49e9", "7e64135c03947996", "9eb1218dcc370fd0"),
}
CLASSES = {
    "rome": ROMEHparams,
    "r-rome": ROMEHparams,
    "memit": MEMITHparams,
    "alphaedit": AlphaEditHparams,
    "ft": FTHparams,
    "ft-l-inf": FTHparams,
    "mend": MENDHparams,
}
PACKAGED = [(method, path) for method in METHODS for path in sorted(method_spec(method).hparams_dir().glob("*.yaml"))]


def test_every_method_has_packaged_files_and_every_file_a_known_hash():
    assert set(CLASSES) == set(METHODS.names())
    assert {(method, path.stem) for method, path in PACKAGED} == set(OLD_HASHES)


@pytest.mark.parametrize("method, path", PACKAGED, ids=[f"{m}/{p.stem}" for m, p in PACKAGED])
def test_packaged_yaml_loads_into_its_class_and_keeps_its_hash(method: str, path: Path):
    hparams = load_hparams(method, path.stem)
    assert type(hparams) is CLASSES[method] and hparams.model_name == path.stem
    assert set(yaml.safe_load(path.read_text())) <= set(hparams.keys())  # every key in the file is a field
    plain, with_revision, training = OLD_HASHES[(method, path.stem)]
    assert hparams.hash() == plain
    revised = replace(hparams, model_revision="rev-1")
    assert revised.hash() == with_revision
    if method == "mend":
        assert revised.training_hash() == training


@pytest.mark.parametrize("method, path", PACKAGED, ids=[f"{m}/{p.stem}" for m, p in PACKAGED])
def test_to_dict_round_trips(method: str, path: Path, tmp_path: Path):
    hparams = load_hparams(method, path.stem)
    record = hparams.to_dict()
    assert record == {**yaml.safe_load(path.read_text()), "model_name": path.stem}  # the file, as written
    again = type(hparams).from_mapping(record)
    assert again == hparams and again.hash() == hparams.hash()
    written = tmp_path / "mine.yaml"
    written.write_text(yaml.safe_dump(record))
    assert load_hparams_file(method, written) == hparams


def _file(tmp_path: Path, method: str, **changes) -> Path:
    record = yaml.safe_load(hparams_path(method, "tiny-gpt2").read_text())
    for key, value in changes.items():
        if value is None:
            del record[key]
        else:
            record[key] = value
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(record))
    return path


def test_an_unknown_key_is_an_error_naming_the_key_and_the_file(tmp_path: Path):
    path = _file(tmp_path, "rome", colour="blue")
    with pytest.raises(HparamsError, match=r"rome\.yaml: unknown rome key 'colour'; known keys: .*v_lr") as error:
        load_hparams_file("rome", path)
    assert "\n" not in str(error.value) and "did you mean" not in str(error.value)


def test_a_misspelt_key_suggests_the_closest_known_one(tmp_path: Path):
    path = _file(tmp_path, "memit", mom2_update_wieght=100)
    with pytest.raises(HparamsError, match=r"memit\.yaml: unknown memit key 'mom2_update_wieght' \(did you mean "):
        load_hparams_file("memit", path)
    with pytest.raises(HparamsError, match="did you mean 'mom2_update_weight'"):
        load_hparams_file("memit", path)


def test_a_missing_required_key_is_an_error(tmp_path: Path):
    path = _file(tmp_path, "ft", num_steps=None)
    with pytest.raises(HparamsError, match=r"ft\.yaml: missing required ft key\(s\) num_steps"):
        load_hparams_file("ft", path)
    # a key with a default may be left out
    assert load_hparams_file("ft", _file(tmp_path, "ft", batch_size=None)).batch_size == 0


@pytest.mark.parametrize(
    "method, key, value, expected",
    [
        ("rome", "v_lr", "fast", "expected float, got str 'fast'"),
        ("rome", "layers", 3, r"expected a list of int, got int 3"),
        ("rome", "mom2_adjustment", "yes", "expected bool, got str 'yes'"),
        ("mend", "rank", 1.5, "expected int, got float 1.5"),
        ("ft", "norm_constraint", True, "expected float or false or null, got bool True"),
    ],
)
def test_a_wrong_type_is_an_error_naming_file_key_expected_and_got(tmp_path, method, key, value, expected):
    path = _file(tmp_path, method, **{key: value})
    with pytest.raises(HparamsError, match=rf"{method}\.yaml: {method} key '{key}': {expected}"):
        load_hparams_file(method, path)


def test_method_rules_are_checked(tmp_path: Path):
    with pytest.raises(HparamsError, match="ROME rewrites one layer"):
        load_hparams_file("rome", _file(tmp_path, "rome", layers=[1, 2]))
    with pytest.raises(HparamsError, match="increasing and distinct"):
        load_hparams_file("memit", _file(tmp_path, "memit", layers=[2, 1]))
    with pytest.raises(HparamsError, match="alphaedit key 'layers': must be increasing"):
        load_hparams_file("alphaedit", _file(tmp_path, "alphaedit", layers=[2, 2]))
    with pytest.raises(HparamsError, match="alphaedit key 'mom2_adjustment'"):
        load_hparams_file("alphaedit", _file(tmp_path, "alphaedit", mom2_adjustment=False))
    with pytest.raises(HparamsError, match="alphaedit key 'L2'"):
        load_hparams_file("alphaedit", _file(tmp_path, "alphaedit", L2=0))
    with pytest.raises(HparamsError, match="kl_factor"):
        load_hparams_file("ft", _file(tmp_path, "ft", kl_factor=0.5))
    with pytest.raises(HparamsError, match="equivalence"):
        load_hparams_file("mend", _file(tmp_path, "mend", equivalence="both"))
    with pytest.raises(HparamsError, match="mom2_n_samples"):
        replace(load_hparams("rome", "tiny-gpt2"), mom2_adjustment=True, mom2_n_samples=None)


def test_changes_enter_the_hash_and_defaults_left_out_do_not():
    base = load_hparams("rome", "tiny-gpt2")
    assert "enable_random_prefix_keys" not in base.to_dict() and base.enable_random_prefix_keys is False
    switched = replace(base, enable_random_prefix_keys=True)
    assert switched.to_dict()["enable_random_prefix_keys"] is True and switched.hash() != base.hash()
    assert replace(base, layers=[2]).layers == (2,)  # lists are stored as tuples
    assert base.updated({"layers": [2]}) == replace(base, layers=[2])
    with pytest.raises(HparamsError, match="overrides: unknown rome key 'layer' \\(did you mean 'layers'"):
        base.updated({"layer": 2})
