"""sample.py: text -> joints through a (briefly) trained run: shapes, lengths, reproducibility independent of
the batch, the command line's outputs, and one-line errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import motion
import sample

ROOT = Path(__file__).resolve().parents[1]


def test_generate_shapes_order_and_length(lm_dir):
    texts = ["a man walks forward.", "someone waves the right hand."]
    joints = sample.generate(texts, lm_dir, num_samples=2, seconds=1.6)
    assert len(joints) == 4
    for j in joints:  # 1.6 s = 8 steps of 4 frames at 20 fps
        assert j.shape == (32, 22, 3) and j.dtype == np.float32 and np.isfinite(j).all()
    # text-major: take 0 and 1 of text 0 first; they are different samples of the same text
    assert not np.array_equal(joints[0], joints[1])


def test_steps_fix_each_texts_length_and_leave_its_take(lm_dir):
    """steps= (eval.py's real lengths): each text's motion is that many codes long (4 frames each), and a
    take with the same fixed length is the take --seconds gives."""
    texts = ["a man walks forward.", "someone waves the right hand.", "a person jumps twice."]
    joints = sample.generate(texts, lm_dir, steps=[3, 8, 5], seed=2)
    assert [len(j) for j in joints] == [12, 32, 20]
    assert np.array_equal(joints[1], sample.generate(texts[1:2], lm_dir, seconds=1.6, seed=2)[0])
    with pytest.raises(ValueError, match="2 steps for 3 texts"):
        sample.generate(texts, lm_dir, steps=[3, 8])


def test_a_take_does_not_depend_on_its_batch(lm_dir):
    alone = sample.generate(["a person jumps twice."], lm_dir, num_samples=2, seed=3, temperature=1.0)
    mixed = sample.generate(["someone squats down slowly, then stands up.", "a person jumps twice."], lm_dir,
                            num_samples=2, seed=3, temperature=1.0)
    for a, b in zip(alone, mixed[2:], strict=True):
        np.testing.assert_array_equal(a, b)
    again = sample.generate(["a person jumps twice."], lm_dir, num_samples=2, seed=3, temperature=1.0)
    np.testing.assert_array_equal(alone[0], again[0])
    other = sample.generate(["a person jumps twice."], lm_dir, num_samples=1, seed=4, temperature=1.0)
    assert not np.array_equal(alone[0], other[0])


def test_batches_group_takes_by_length_and_leave_them_as_they_are(lm_dir, monkeypatch):
    """A batch runs until its longest row ends: takes are batched by the length they may reach, not by their
    texts' length (here the two orders differ), and each take is the one a batch of all four gives."""
    texts = ["a man walks.", "someone waves the right hand slowly.", "a person jumps.", "a girl squats."]
    steps = [9, 2, 2, 9]  # by text length the batches of two would be [9, 2] and [2, 9]
    together = sample.generate(texts, lm_dir, steps=steps, seed=5, batch_size=4)
    calls, generate = [], sample.lm_model.MotionLM.generate

    def spy(self, prompts, *args, max_steps=None, **kwargs):
        calls.append(list(max_steps))
        return generate(self, prompts, *args, max_steps=max_steps, **kwargs)
    monkeypatch.setattr(sample.lm_model.MotionLM, "generate", spy)
    paired = sample.generate(texts, lm_dir, steps=steps, seed=5, batch_size=2)
    assert calls == [[2, 2], [9, 9]]
    for a, b in zip(together, paired, strict=True):
        np.testing.assert_array_equal(a, b)


def test_keys_give_equal_texts_independent_takes(lm_dir):
    """eval.py keys each take by its draw position: two clips with the same caption must not get the same
    motion (they did when a take was seeded by (seed, text, take) alone)."""
    text = "a person jumps twice."
    plain = sample.generate([text, text], lm_dir, seed=3, temperature=1.0)
    np.testing.assert_array_equal(plain[0], plain[1])
    keyed = sample.generate([text, text], lm_dir, seed=3, temperature=1.0, keys=[0, 1])
    assert not np.array_equal(keyed[0], keyed[1])
    again = sample.generate([text], lm_dir, seed=3, temperature=1.0, keys=[1])  # a key, not a batch place
    np.testing.assert_array_equal(keyed[1], again[0])
    with pytest.raises(ValueError, match="2 keys for 1 texts"):
        sample.generate([text], lm_dir, keys=[0, 1])


def test_part_texts_per_text_are_the_same_as_alone(lm_dir):
    """parts= one dict per text (None: none): each text's takes are those it gets alone with its own part
    texts, and the part texts change what is generated."""
    texts = ["a person walks forward.", "someone squats twice."]
    parts = {"upper": "the left arm rises above the head.", "lower": "the knees bend twice."}
    both = sample.generate(texts, lm_dir, seed=5, temperature=1.0, parts=[None, parts])
    np.testing.assert_array_equal(both[0], sample.generate(texts[:1], lm_dir, seed=5, temperature=1.0)[0])
    alone = sample.generate(texts[1:], lm_dir, seed=5, temperature=1.0, parts=parts)[0]
    np.testing.assert_array_equal(both[1], alone)
    # (the length estimator reads the caption alone: with the LM deciding the length, the parts show sooner)
    plain, with_parts = (sample.generate(texts[1:], lm_dir, seed=5, temperature=1.0, parts=p,
                                         lengths="model")[0] for p in (None, parts))
    assert plain.shape != with_parts.shape or not np.array_equal(plain, with_parts)


def test_joints_are_the_decoded_codes(lm_dir, codes_dir):
    """Greedy joints equal an independent chain: the LM's codes -> tokenizer.decode -> recover_from_ric."""
    import torch

    import tokenizer

    lm, tok = sample.load_run(lm_dir)
    codes = lm.generate(["a man walks forward."], steps=5, temperature=0)[0]
    feats = tokenizer.load(codes_dir / "tok" / "t").decode(torch.as_tensor(codes)[None])[0].detach().numpy()
    expected = motion.recover_from_ric(feats, 22)
    got = sample.generate(["a man walks forward."], lm_dir, seconds=1.0, temperature=0)[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_cli_writes_npy_and_gif(lm_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person claps.\n\nsomeone kicks with the left leg.\n")
    result = subprocess.run([sys.executable, "sample.py", f"--lm_dir={lm_dir}", f"--file={prompts}",
                             "--text=a man jumps.", f"--out_dir={tmp_path / 'out'}", "--seconds=1.2",
                             "--device=cpu"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "out" / lm_dir.name).iterdir())
    assert files == ["a_man_jumps_0.gif", "a_man_jumps_0.npy", "a_person_claps_0.gif", "a_person_claps_0.npy",
                     "someone_kicks_with_the_left_leg_0.gif", "someone_kicks_with_the_left_leg_0.npy"]
    assert np.load(tmp_path / "out" / lm_dir.name / "a_man_jumps_0.npy").shape == (24, 22, 3)


def test_cli_bvh_beside_the_npy(lm_dir, tmp_path, run_script):
    """--bvh writes <text>_<take>.bvh beside the .npy, a frame for each of its frames (tests/test_bvh.py reads
    such files back into joints)."""
    status, _, err = run_script("sample.py", f"--lm_dir={lm_dir}", "--text=a man waves.", "--bvh",
                                "--gif=false", f"--out_dir={tmp_path}", "--seconds=1.2", "--device=cpu")
    assert status == 0, err
    out = tmp_path / lm_dir.name
    assert sorted(p.name for p in out.iterdir()) == ["a_man_waves_0.bvh", "a_man_waves_0.npy"]
    text = (out / "a_man_waves_0.bvh").read_text()
    assert text.startswith("HIERARCHY\nROOT Pelvis\n") and "\nMOTION\nFrames: 24\nFrame Time: 0.05" in text


def test_clear_errors(lm_dir, tmp_path, codes_dir, run_script):
    def one_line(*args):
        status, _, err = run_script("sample.py", *args, "--device=cpu")
        lines = err.strip().splitlines()
        assert status == 1 and len(lines) == 1 and lines[0].startswith("sample.py: "), err
        return lines[0]

    assert "empty text" in one_line(f"--lm_dir={lm_dir}", "--text=   ")
    assert "not a trained language model run" in one_line(f"--lm_dir={tmp_path / 'none'}", "--text=a man")
    broken = tmp_path / "broken"
    shutil.copytree(lm_dir, broken)
    (broken / "model" / "model.safetensors").unlink()
    assert "model.safetensors" in one_line(f"--lm_dir={broken}", "--text=a man waves")
    # a tokenizer run that no longer matches the codes the LM learned
    other = tmp_path / "tok2"
    shutil.copytree(codes_dir / "tok" / "t", other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "codebook_size": 128}))
    mismatched = tmp_path / "mismatched"
    shutil.copytree(lm_dir, mismatched)
    run_cfg = json.loads((mismatched / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps({**run_cfg, "tokenizer": str(other)}))
    message = one_line(f"--lm_dir={mismatched}", "--text=a man waves")
    expected = f"its motion vocabulary: K = 64, P = 6, but the tokenizer run {other} has K = 128, P = 6"
    assert expected in message, message


# ---- editing (sample.edit, sample.keep_mask) ---------------------------------------------------------------
def test_edit_keeps_the_source_length_or_continues(lm_dir, codes_dir):
    import data

    ds = data.MotionData(codes_dir / "ds")
    source = motion.recover_from_ric(np.array(ds.motion(0), np.float32), 22)
    steps = len(source) // 4  # features_from_joints of T frames + 1 repeated: T frames, cropped to steps of 4
    edited = sample.edit(source, "a man walks forward and raises the left arm.", keep="lower", lm_dir=lm_dir,
                         num_samples=2, seed=1, temperature=1.0)
    assert [j.shape for j in edited] == [(4 * steps, 22, 3)] * 2
    continued = sample.edit(source, "a man walks, then jumps.", keep_seconds=0.4, lm_dir=lm_dir, seed=1)
    assert len(continued[0]) >= 8  # at least the two kept steps
    with pytest.raises(ValueError, match="names no part of this run"):
        sample.edit(source, "a man waves.", keep="tail", lm_dir=lm_dir)
    with pytest.raises(ValueError, match="keep at least one step and less than all of it"):
        sample.edit(source, "a man waves.", keep_seconds=60, lm_dir=lm_dir)


def test_edit_cli_writes_the_edit_beside_its_source_and_errors_write_nothing(lm_dir, codes_dir, tmp_path,
                                                                            run_script):
    def run(*args):  # -> (exit status, stderr)
        where = [f"--lm_dir={lm_dir}", f"--out_dir={tmp_path / 'o'}", f"--data_dir={codes_dir / 'ds'}"]
        status, _, err = run_script("sample.py", *where, "--device=cpu", *args)
        return status, err

    import data

    clip = data.MotionData(codes_dir / "ds").ids[35]
    status, err = run(f"--edit={clip}", "--keep=lower", "--text=a man walks forward and raises the left arm.")
    assert status == 0, err
    written = sorted(p.name for p in (tmp_path / "o" / "r").iterdir())
    stem = f"edit_{clip}_a_man_walks_forward_and_raises_the_left_arm_0"
    assert written == [f"{stem}.gif", f"{stem}.npy"]
    from PIL import Image
    with Image.open(tmp_path / "o" / "r" / f"{stem}.gif") as gif:
        assert gif.size == (640, 320)  # the source and the edit side by side
    shutil.rmtree(tmp_path / "o")
    np.save(tmp_path / "hands.npy", np.zeros((40, 52, 3), np.float32))
    np.save(tmp_path / "short.npy", np.zeros((3, 22, 3), np.float32))
    hands, short = f"--edit={tmp_path / 'hands.npy'}", f"--edit={tmp_path / 'short.npy'}"
    for args, message in ((["--edit=nope", "--keep=lower"], "neither a .npy file nor a clip id"),
                          ([hands, "--keep=lower"], "this run's skeleton is [T, 22, 3]"),
                          ([short, "--keep=lower"], "shorter than one step of 4"),
                          ([f"--edit={clip}", "--keep=tail"], "names no part of this run"),
                          ([f"--edit={clip}", "--keep_seconds=60"], "less than all of it"),
                          ([f"--edit={clip}"], "give what to keep")):
        status, err = run(*args, "--text=a man waves.")
        lines = err.strip().splitlines()
        assert status == 1 and len(lines) == 1 and message in lines[0], (args, err)
    status, err = run(f"--edit={clip}", "--keep=lower", "--text=  ")
    assert status == 1 and "empty text" in err
    assert not (tmp_path / "o").exists()  # nothing written
