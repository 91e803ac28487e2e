"""Nothing lost in silence: full disks, permissions, damaged inputs, impossible settings
(the probes of a hostile new user), each at the level where a user meets it."""

import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from boxseg import io
from boxseg.atomic import write_text
from boxseg.io import write_image
from boxseg.workflow import run_step
from tests.conftest import ROOT


def _image(shape=(40, 60, 60)):
    return sitk.GetImageFromArray(np.random.default_rng(0).normal(size=shape).astype(np.float32))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB file system (tmpfs; needs root, as CI has), else skipped."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


class TestFullDisk:
    def test_a_full_disk_raises_and_leaves_nothing(self, tiny_disk):
        with pytest.raises(OSError, match="does not read back"):  # ITK only prints "wrote only 0 of N bytes"
            write_image(_image(), tiny_disk / "image.nii.gz")
        with pytest.raises(OSError, match="No space left"):
            write_text("x" * 100_000, tiny_disk / "table.tsv")
        assert os.listdir(tiny_disk) == []  # no output, no temporary file
        write_image(_image((4, 4, 4)), tiny_disk / "small.nii.gz")  # with room it writes
        assert sitk.ReadImage(str(tiny_disk / "small.nii.gz")).GetSize() == (4, 4, 4)

    def test_a_short_write_that_itk_does_not_report_is_caught(self, tmp_path, monkeypatch):
        """Injected at the writer: ITK writes half the file and returns normally."""
        real = sitk.WriteImage

        def short_write(image, path, useCompression=False):
            real(image, path, useCompression=useCompression)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)

        monkeypatch.setattr(io.sitk, "WriteImage", short_write)
        with pytest.raises(OSError, match="is the disk full"):
            write_image(_image(), tmp_path / "image.nii.gz")
        assert os.listdir(tmp_path) == []

    def test_a_failed_write_is_one_line_naming_the_case(self, tmp_path, capsys):
        def step(_):
            raise OSError(28, "No space left on device", str(tmp_path / "roi.nii.gz"))

        snakemake = SimpleNamespace(log=[str(tmp_path / "job.log")], wildcards=SimpleNamespace(case="case_7"))
        with pytest.raises(SystemExit) as stop:
            run_step(snakemake, step)
        line = f"case case_7: {tmp_path / 'roi.nii.gz'}: No space left on device"
        assert str(stop.value) == f"ERROR {line}"
        assert capsys.readouterr().err.strip() == f"ERROR {line}"
        assert line in (tmp_path / "job.log").read_text()


def test_outputs_are_readable_by_the_group(tmp_path):
    """Written with the permissions of any new file (0o666 less the umask), not the
    temporary file's owner-only 0o600."""
    old = os.umask(0o022)
    try:
        write_image(_image((4, 4, 4)), tmp_path / "mask.nii.gz")
        write_text("a\tb\n", tmp_path / "metrics.tsv")
    finally:
        os.umask(old)
    for name in ("mask.nii.gz", "metrics.tsv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def _children(pid: int) -> list:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the job")
def test_a_job_stops_when_snakemake_alone_is_killed(tmp_path):
    """kill -9 of Snakemake alone (not its process group): its running job notices within a
    few seconds and stops with one line, instead of training on as an orphan."""
    (tmp_path / "Snakefile").write_text(
        'rule slow:\n    output: "done.txt"\n    log: "slow.log"\n    script: "slow.py"\n')
    (tmp_path / "slow.py").write_text(
        "import time\nfrom boxseg.workflow import run_step\n"
        "def step(s):\n    open('started', 'w').close()\n    time.sleep(120)\n"
        "run_step(snakemake, step)\n")
    proc = subprocess.Popen([str(ROOT / ".venv/bin/snakemake"), "--cores", "1"], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (tmp_path / "started").exists() and time.time() < deadline:
        time.sleep(0.2)
    jobs = _children(proc.pid)
    assert jobs, "the job did not start"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while any(Path(f"/proc/{j}").exists() for j in jobs) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{j}").exists() for j in jobs), "the job went on without Snakemake"
    log = (tmp_path / "slow.log").read_text()
    assert "is gone: stopping this job" in log and "stopped (SIGTERM)" in log
    assert not (tmp_path / "done.txt").exists()


def test_sigterm_stops_a_job_with_one_line(tmp_path, capsys):
    def step(_):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    snakemake = SimpleNamespace(log=[str(tmp_path / "job.log")], wildcards=SimpleNamespace(case="c1"))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit, match="case c1: stopped \\(SIGTERM\\)"):
            run_step(snakemake, step)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "the same command resumes it" in capsys.readouterr().err


@pytest.mark.parametrize("lesions, problem", [
    ([0], "box 1 of 1: lesion 0 is not a whole number from 1 to 255"),
    ([300], "box 1 of 1: lesion 300 is not a whole number from 1 to 255"),
    ([-1], "box 1 of 1: lesion -1 is not"),
    (["abc"], "box 1 of 1: lesion 'abc' is not"),
    ([float("nan")], "box 1 of 1: lesion '' is not"),
    ([2.5], "box 1 of 1: lesion '2.5' is not"),
    ([1, 2, 1], "box 3 of 3: lesion 1 is already the id of box 1 of 3"),
])
def test_box_table_lesion_ids_are_checked_per_case(lesions, problem):
    from boxseg.boxes import check_lesion_ids
    from boxseg.boxes.records import lesion_id
    from boxseg.io import CaseError

    rows = [{"lesion": lesion_id(v)} for v in lesions]
    with pytest.raises(CaseError) as err:
        check_lesion_ids(rows, "c1", "boxes.tsv")
    assert str(err.value).startswith("case c1: boxes.tsv: ") and problem in str(err.value)
    check_lesion_ids([{"lesion": lesion_id(v)} for v in (1, "2", 255.0)], "c1", "boxes.tsv")  # whole numbers pass


def test_a_dicom_series_missing_a_slice_is_refused_and_rounded_positions_are_not(tmp_path):
    """Positions rounded to 0.01 mm on 0.625 mm slices read as they are; a lost slice is one line."""
    from boxseg.io import CaseError, read_image
    from tests.test_user_data import write_dicom_series

    image = sitk.GetImageFromArray((np.random.default_rng(0).normal(size=(12, 16, 16)) * 100).astype(np.int16))
    image.SetSpacing((0.7, 0.7, 0.625))
    write_dicom_series(image, tmp_path / "ct", decimals=2)
    assert read_image(tmp_path / "ct", "c1").GetSize() == (16, 16, 12)
    (tmp_path / "ct/0006.dcm").unlink()
    with pytest.raises(CaseError, match="DICOM slices are not evenly spaced: 1.2[0-9]* mm between slices 6 and 7 of 11"):
        read_image(tmp_path / "ct", "c1")
