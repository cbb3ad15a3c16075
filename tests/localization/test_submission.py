"""The 2019 segment task's files: submission CSV round trip and errors, the
segment_label_ids.csv whitelist, ratings read from TFRecords, and the MAP@K command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vidistill.data import AUDIO_SIZE, RGB_SIZE, RecordWriter, encode_frame_example
from vidistill.data.sharding import expand_files
from vidistill.localization.submission import (
    files_are_rated,
    main,
    read_segment_ratings,
    read_submission_csv,
    read_whitelist,
    write_submission_csv,
)

# --------------------------------------------------------------------------------------------
# Submission files
# --------------------------------------------------------------------------------------------


def test_csv_round_trip_and_overwrite(tmp_path):
    path = tmp_path / "submission.csv"
    submission = {12: ["c:10"], 0: [b"a:0", "b:5"], 3: []}
    write_submission_csv(path, submission)
    # Sorted by class, canonical ids, an empty row kept, plain \n line ends.
    assert path.read_bytes() == b"Class,Segments\n0,a:0 b:5\n3,\n12,c:10\n"
    assert read_submission_csv(path) == {0: ["a:0", "b:5"], 3: [], 12: ["c:10"]}

    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_submission_csv(path, {1: ["z:0"]})
    assert read_submission_csv(path) == {0: ["a:0", "b:5"], 3: [], 12: ["c:10"]}
    write_submission_csv(path, {1: ["z:0"]}, overwrite=True)
    assert read_submission_csv(path) == {1: ["z:0"]}
    # Bad input is refused before anything is written, and no temporary file is left behind.
    with pytest.raises(ValueError, match="duplicate segment id"):
        write_submission_csv(tmp_path / "other.csv", {1: ["z:0", "z:0"]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]


def test_csv_reader_tolerates_what_the_official_script_does_not(tmp_path):
    path = tmp_path / "s.csv"
    # BOM, header, CRLF, two spaces between ids, a Python bytes literal id, trailing blank lines.
    path.write_bytes(b"\xef\xbb\xbfClass,Segments\r\n3,a:0  b:5\r\n7,b'c':10\r\n\r\n\n")
    assert read_submission_csv(path) == {3: ["a:0", "b:5"], 7: ["c:10"]}
    # No header and no final newline: the last id is not lost.
    path.write_bytes(b"3,a:0 b:5\n7,c:10")
    assert read_submission_csv(path) == {3: ["a:0", "b:5"], 7: ["c:10"]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"Class,Segments\n3,a:0\nno comma here\n", "line 3: expected 'class,segment"),
        (b"Class,Segments\n3,a:0,b:5\n", "line 2: expected 'class,segment"),
        (b"Class,Segments\nx,a:0\n", "line 2: class index 'x' is not"),
        (b"Class,Segments\n-1,a:0\n", "line 2: class index '-1' is not"),
        (b"Class,Segments\n3,a:0\n4,b:0\n3,c:0\n", "line 4: class 3 already given on line 2"),
        (b"Class,Segments\n3,a:0 b:5 a:0\n", "line 2: class 3: duplicate segment id 'a:0'"),
        (b"Class,Segments\n3,a:0 b:7\n", "line 2: class 3: malformed segment id 'b:7'"),
        (b"Class,Segments\n3,a:0\n\n4,b:0\n", "line 3: blank line inside the file"),
        (b"Class,Segments\n3,a:0 \xff:5\n", "line 2: not UTF-8 text"),
        (b"3,a:0\nClass,Segments\n", "line 2: class index 'Class' is not"),
    ],
)
def test_csv_errors_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        read_submission_csv(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


# --------------------------------------------------------------------------------------------
# The whitelist
# --------------------------------------------------------------------------------------------


def test_read_whitelist(tmp_path):
    path = tmp_path / "segment_label_ids.csv"
    path.write_text("Index\n7\n3\n\n")
    assert read_whitelist(path, 10).tolist() == [3, 7]
    assert read_whitelist(path).tolist() == [3, 7]  # no vocabulary: no range check
    path.write_text("Index\n3\n12\n")
    with pytest.raises(ValueError, match=r"classes \[12\] are outside the vocabulary of 10"):
        read_whitelist(path, 10)
    path.write_text("Index\n")
    with pytest.raises(ValueError, match="no class index"):
        read_whitelist(path, 10)
    path.write_text("Index\nthree\n")
    with pytest.raises(ValueError, match="line 2"):
        read_whitelist(path, 10)


# --------------------------------------------------------------------------------------------
# Ratings from TFRecords, and the command line
# --------------------------------------------------------------------------------------------


def write_rated(path: Path, videos: dict[str, list[tuple[int, int, float]]]) -> None:
    """A segment-rated shard: {video id: [(start, class, score), ...]}, 20 frames per video."""
    rng = np.random.default_rng(0)
    with RecordWriter(str(path)) as writer:
        for video_id, rated in videos.items():
            segments = {
                "segment_start_times": [s for s, _, _ in rated],
                "segment_end_times": [s + 5 for s, _, _ in rated],
                "segment_labels": [c for _, c, _ in rated],
                "segment_scores": [v for _, _, v in rated],
            }
            rgb = rng.integers(0, 256, (20, RGB_SIZE), dtype=np.uint8)
            audio = rng.integers(0, 256, (20, AUDIO_SIZE), dtype=np.uint8)
            labels = sorted({c for _, c, _ in rated})
            writer.write(encode_frame_example(video_id, labels, rgb, audio, segments))


@pytest.fixture
def rated_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "segment"
    directory.mkdir()
    write_rated(
        directory / "validate0000.tfrecord",
        {"Ab1": [(0, 3, 1.0), (5, 3, 0.0), (5, 8, 1.0)], "Cd2": []},
    )
    write_rated(directory / "validate0001.tfrecord", {"Ef3": [(10, 3, 1.0), (15, 8, 0.0)]})
    return directory


def test_ratings_are_read_from_tfrecords(rated_dir):
    ratings = sorted(read_segment_ratings(str(rated_dir / "validate*.tfrecord")))
    assert ratings == [
        ("Ab1:0", 3, 1.0),
        ("Ab1:5", 3, 0.0),
        ("Ab1:5", 8, 1.0),
        ("Ef3:10", 3, 1.0),
        ("Ef3:15", 8, 0.0),
    ]
    with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
        list(read_segment_ratings(str(rated_dir / "test*.tfrecord")))


def test_ratings_are_read_from_urls_and_gzip(rated_dir):
    """The same ratings from a memory:// glob, and from gzip shards (``.gz``) in it."""
    import gzip

    import fsspec

    expected = sorted(read_segment_ratings(str(rated_dir / "validate*.tfrecord")))
    fs = fsspec.filesystem("memory")
    try:
        for path in rated_dir.glob("validate*.tfrecord"):
            fs.pipe(f"/vidistill-rated/{path.name}", path.read_bytes())
            fs.pipe(f"/vidistill-rated/gz/{path.name}.gz", gzip.compress(path.read_bytes()))
        assert sorted(read_segment_ratings("memory://vidistill-rated/validate*")) == expected
        assert files_are_rated(expand_files("memory://vidistill-rated/gz/*.gz"))
        assert sorted(read_segment_ratings("memory://vidistill-rated/gz/*.gz")) == expected
    finally:
        fs.rm("/vidistill-rated", recursive=True)


def write_cli_inputs(tmp_path: Path) -> tuple[Path, Path]:
    # Class 3 (N = 2): Ab1:5 (negative) then Ab1:0 and Ef3:10 (positives): P = 1/2 and 2/3,
    # AP = (1/2 + 2/3) / 2 = 7/12. Class 8 (N = 1): Ab1:5 first, AP = 1. MAP = (7/12 + 1) / 2
    # = 19/24 = 0.791667. Class 5 has no rating and is not evaluated.
    submission = tmp_path / "submission.csv"
    submission.write_text("Class,Segments\n3,Ab1:5 Ab1:0 Ef3:10\n8,Ab1:5 Ef3:15\n5,Ab1:0\n")
    whitelist = tmp_path / "segment_label_ids.csv"
    whitelist.write_text("Index\n8\n")
    return submission, whitelist


def test_cli_prints_map_at_k(tmp_path, rated_dir, capsys):
    submission, whitelist = write_cli_inputs(tmp_path)
    pattern = str(rated_dir / "*.tfrecord")
    assert main([str(submission), pattern]) == 0
    out, err = capsys.readouterr()
    assert out == "MAP@100000: 0.791667 over 2 classes\n"
    assert "1 submitted classes are not evaluated" in err and "[5]" in err
    # K = 1 keeps one entry per class: class 3 keeps Ab1:5 (negative), AP 0; class 8 AP 1.
    assert main([str(submission), pattern, "--k", "1"]) == 0
    assert capsys.readouterr().out == "MAP@1: 0.500000 over 2 classes\n"
    assert main([str(submission), pattern, "--classes", str(whitelist)]) == 0
    assert capsys.readouterr().out == "MAP@100000: 1.000000 over 1 classes\n"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing submission", "No such file or directory"),
        ("bad row", "line 2: class 3: malformed segment id 'Ab1:3'"),
        ("no shards", "no TFRecord files match"),
        ("bad k", "k must be a positive integer"),
        ("empty whitelist", "no class in the --classes whitelist has a positive rating"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, rated_dir, capsys, case, message):
    submission, whitelist = write_cli_inputs(tmp_path)
    argv = [str(submission), str(rated_dir / "*.tfrecord")]
    if case == "missing submission":
        argv[0] = str(tmp_path / "nope.csv")
    elif case == "bad row":
        submission.write_text("Class,Segments\n3,Ab1:3\n")
    elif case == "no shards":
        argv[1] = str(tmp_path / "nothing*.tfrecord")
    elif case == "bad k":
        argv += ["--k", "0"]
    else:
        whitelist.write_text("Index\n42\n")
        argv += ["--classes", str(whitelist)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err


def test_cli_runs_as_a_module(tmp_path, rated_dir):
    submission, _ = write_cli_inputs(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "vidistill.localization.submission", str(submission)]
        + sorted(str(p) for p in rated_dir.iterdir()),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "MAP@100000: 0.791667 over 2 classes\n"
    # Only the note about class 5: no runpy warning about the module being imported twice.
    assert run.stderr.startswith("note: ") and run.stderr.count("\n") == 1
