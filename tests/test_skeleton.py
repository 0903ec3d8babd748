import pytest

from keypointgan import InputError, Skeleton
from keypointgan.skeleton import preset


def test_names_to_indices_and_yaml_round_trip(tmp_path):
    sk = Skeleton(
        keypoints=["head", "neck", "pelvis", "l_wrist", "r_wrist"],
        limbs=[("head", "neck"), ("neck", "pelvis")],
        symmetric=[("l_wrist", "r_wrist")],
        name="person",
    )
    assert sk.keypoints == ("head", "neck", "pelvis", "l_wrist", "r_wrist")
    assert sk.limbs == ((0, 1), (1, 2))
    assert sk.symmetric == ((3, 4),)
    assert sk.flip_permutation == [0, 1, 2, 4, 3]
    path = tmp_path / "s.yaml"
    sk.to_yaml(path)
    assert Skeleton.from_yaml(path) == sk


def test_issue_yaml_form(tmp_path):
    path = tmp_path / "skeleton.yaml"
    path.write_text(
        "name: person\nkeypoints: [head, neck, pelvis, l_wrist, r_wrist]\n"
        "limbs: [[head, neck], [neck, pelvis]]\nsymmetric: [[l_wrist, r_wrist]]\n"
    )
    sk = Skeleton.from_yaml(path)
    assert sk.name == "person" and sk.limbs == ((0, 1), (1, 2))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(keypoints=["a", "b"], limbs=[("a", "c")]), "unknown keypoint 'c'"),
        (dict(keypoints=["a", "a"], limbs=[("a", "a")]), "duplicate keypoint name(s): a"),
        (dict(keypoints=["a", "b"], limbs=[("a", "a")]), "joins keypoint 'a' to itself"),
        (dict(keypoints=["a", "b"], limbs=[]), "at least one limb"),
        (dict(keypoints=["a", "b"], limbs=[("a", "b"), ("b", "a")]), "listed twice"),
        (dict(keypoints=["a", "b"], limbs=[("a", "b")], symmetric=[("a", "x")]), "unknown keypoint 'x'"),
    ],
)
def test_validation(kwargs, message):
    with pytest.raises(InputError) as e:
        Skeleton(**kwargs)
    assert message in str(e.value)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("keypoints: [a, b]\nlimbs: [[a, z]]\n")
    with pytest.raises(InputError) as e:
        Skeleton.from_yaml(bad)
    assert str(bad) in str(e.value) and "unknown keypoint 'z'" in str(e.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("keypoints: [a, b\nlimbs: :\n")
    with pytest.raises(InputError, match="not valid YAML"):
        Skeleton.from_yaml(broken)
    with pytest.raises(InputError, match="not found"):
        Skeleton.from_yaml(tmp_path / "missing.yaml")


def test_presets():
    h = preset("human36m")
    assert len(h.keypoints) == 32 and len(h.limbs) == 16
    assert len(h.used_keypoints) == 17
    names = {h.keypoints[i] for i in h.used_keypoints}
    assert {"pelvis", "neck", "head_back", "l_wrist", "r_toes"} <= names
    pairs = {(h.keypoints[a], h.keypoints[b]) for a, b in h.symmetric}
    assert ("l_wrist", "r_wrist") in pairs and ("l_hip", "r_hip") in pairs
    s = preset("synthetic")
    assert len(s.keypoints) == 15 and len(s.limbs) == 14 and len(s.symmetric) == 6
    with pytest.raises(InputError, match="unknown skeleton preset"):
        preset("cat")
