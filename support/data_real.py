"""data.py's real-data loaders (`python data.py --source=humanml3d|smplx --src=DIR`), run in worker processes:
each source file -> a list of clips in write_dataset's format ({"id", "feats", "captions", "parts", "subset",
"file", ...}), or {"id", "file", "error"} when it fails to load (counted as load_error)."""

from pathlib import Path

import numpy as np
import torch

from common import parallel_map, progress_bar
from motion import FPS, MAX_FRAMES, SMPLX_TO_52, STILL_FRAMES, features_from_joints, forward_kinematics


def read_splits(src):  # {name: split} from src/train.txt, val.txt, test.txt (those present)
    paths = {s: Path(src) / f"{s}.txt" for s in ("train", "val", "test")}
    return {n: s for s, p in paths.items() if p.is_file() for n in p.read_text(encoding="utf-8").split()}


def load_humanml3d(name, src, t2m_test):
    """HumanML3D layout: new_joint_vecs/<name>.npy [T, 263], texts/<name>.txt lines caption#tokens#start#end.
    start = end = 0 captions the whole clip; other lines caption the sub-clip [start, end) seconds. The
    tokens ("a/DET man/NOUN ...") are kept beside the captions for the standard evaluator. A name in
    `t2m_test` is read as Guo et al.'s evaluation set has it (their Text2MotionDatasetV2, so that figures
    compare with Table 3's): files of 200+ frames are left out whole (as too_long: each entry's max_frames,
    199, is what data.py checks), and every sub-clip caption line makes its own entry."""
    file, text = Path(src) / "new_joint_vecs" / f"{name}.npy", Path(src) / "texts" / f"{name}.txt"
    feats = np.load(file, allow_pickle=False)
    by_range = {}
    for line in (text.read_bytes().splitlines() if text.is_file() else []):
        fields = line.split(b"#")
        start, end = (float(fields[2]), float(fields[3])) if len(fields) >= 4 else (0.0, 0.0)
        start, end = (0.0 if np.isnan(start) else start), (0.0 if np.isnan(end) else end)  # nan = whole
        by_range.setdefault((start, end), []).append((fields[0], fields[1] if len(fields) > 1 else b""))
    t2m = name in t2m_test
    entry = {"file": str(file), "text_file": str(text), "parts": {}, "subset": "humanml3d",
             **({"max_frames": 199} if t2m else {})}
    if t2m and len(feats) >= 200:
        return [{**entry, "id": name, "feats": feats, "captions": [b"-"], "tokens": [b""]}]
    clips = []
    for (start, end), lines in (by_range or ({} if t2m else {(0.0, 0.0): []})).items():
        whole = start == 0 and end == 0
        piece = {**entry, "feats": feats if whole else feats[int(start * FPS):int(end * FPS)]}
        if whole or not t2m:
            clips.append({**piece, "id": name if whole else f"{name}@{start:g}-{end:g}",
                          "captions": [c for c, _ in lines], "tokens": [t for _, t in lines]})
        else:  # t2m_test: one entry per caption line
            clips += [{**piece, "id": f"{name}@{start:g}-{end:g}#{k}", "captions": [c], "tokens": [t]}
                      for k, (c, t) in enumerate(lines)]
    return clips


_smplx_models = {}


def smplx_joints(params, model_dir, gender="neutral"):
    """SMPL-X parameters {root_orient [T,3], pose_body [T,63], pose_hand [T,90], trans [T,3], betas} ->
    joints [T, 52, 3] (55 SMPL-X joints minus jaw and eyes). Joints depend on the shaped rest mesh only
    (J = J_regressor (v_template + shapedirs betas)), so the mesh is never posed: FK of the SMPL-X tree."""
    import smplx
    key = (str(model_dir), gender)
    if key not in _smplx_models:
        files = [p for d in (Path(model_dir) / "smplx", Path(model_dir)) for ext in ("npz", "pkl")
                 if (p := d / f"SMPLX_{gender.upper()}.{ext}").is_file()]
        if not files:
            raise FileNotFoundError(f"{model_dir}: no SMPLX_{gender.upper()}.npz/.pkl (here or in smplx/)")
        _smplx_models[key] = smplx.create(str(files[0]), model_type="smplx", gender=gender, use_pca=False,
                                          flat_hand_mean=True, ext=files[0].suffix[1:])
    model = _smplx_models[key]
    f32 = {k: torch.as_tensor(np.asarray(params[k], dtype=np.float32)) for k in
           ("root_orient", "pose_body", "pose_hand", "trans", "betas")}
    T = len(f32["root_orient"])
    betas = f32["betas"].reshape(-1, f32["betas"].shape[-1])[0, :model.num_betas]
    v_shaped = model.v_template + (model.shapedirs[..., :len(betas)] * betas).sum(-1)
    rest = model.J_regressor @ v_shaped  # [55, 3]
    parents = model.parents.tolist()
    pose = torch.cat([f32["root_orient"], f32["pose_body"], torch.zeros(T, 9), f32["pose_hand"]], 1)
    offsets = rest - rest[[0] + parents[1:]]
    joints = forward_kinematics(pose.reshape(T, 55, 3), f32["trans"] + rest[0], offsets, parents)
    return joints[:, SMPLX_TO_52].detach().numpy()


def load_smplx(name, src, model_dir, gender="neutral", src_fps=30.0, up="y"):
    """motions/<name>.npz (root_orient, pose_body, pose_hand, trans, betas; optional fps) + texts/<name>.txt
    (whole-body captions, one a line; lines "upper: ..." / "lower: ..." are the part descriptions)."""
    src = Path(src)
    with np.load(src / "motions" / f"{name}.npz", allow_pickle=False) as f:
        params = {k: f[k] for k in f.files}
    joints = smplx_joints(params, model_dir, gender)
    if up == "z":  # AMASS-style z-up -> y-up, as HumanML3D does: (x, y, z) -> (-x, z, y)
        joints = np.stack([-joints[..., 0], joints[..., 2], joints[..., 1]], -1)
    fps = float(params.get("fps", params.get("mocap_framerate", src_fps)))
    joints = joints[np.round(np.arange(0, len(joints), fps / 20)).astype(int).clip(max=len(joints) - 1)]
    if len(joints) == 1:
        joints = np.repeat(joints, STILL_FRAMES + 1, 0)
    captions, parts, text = [], {}, src / "texts" / f"{name}.txt"
    for line in (text.read_bytes().splitlines() if text.is_file() else []):
        head, _, rest = line.partition(b":")
        if head.strip() in (b"upper", b"lower") and rest.strip():
            parts[head.strip().decode()] = rest.strip().decode("utf-8", "replace")
        else:
            captions.append(line)
    n_pieces = -(-(len(joints) - 1) // MAX_FRAMES)
    bounds = np.linspace(0, len(joints) - 1, n_pieces + 1).round().astype(int)
    return [{"id": name if n_pieces == 1 else f"{name}@{k}", "file": str(src / "motions" / f"{name}.npz"),
             "text_file": str(text), "feats": features_from_joints(joints[a:b + 1]), "captions": captions,
             "parts": parts, "subset": Path(name).parent.name or "smplx"}
            for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]


def _convert(job):
    loader, name, path, kwargs = job
    try:
        return loader(name, **kwargs)
    except Exception as e:  # noqa: BLE001 - any unreadable file is counted (or strict: reported), never fatal
        return [{"id": name, "file": str(path), "error": f"cannot load ({type(e).__name__}: {e})"}]


def convert(loader, folder, suffix, default_split, workers, splits, **kwargs):
    """Yield the clips of every file folder/**/*suffix (named by its path there without suffix), converted by
    `workers` processes, in order (close it to stop them). Every clip cut from file `name` goes to the split
    splits[name], else default_split(name): pieces of one sequence share a split (no train/test leakage)."""
    jobs = [(loader, str(p.relative_to(folder).with_suffix("")), p, kwargs)
            for p in sorted(Path(folder).rglob(f"*{suffix}"))]
    bar = progress_bar(zip(jobs, parallel_map(_convert, jobs, workers), strict=True), total=len(jobs),
                       desc="convert", unit="file")
    for (_, name, _, _), clips in bar:
        for clip in clips:
            clip["split"] = splits.get(name) or default_split(name)
            yield clip
