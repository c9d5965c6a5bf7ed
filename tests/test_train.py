"""The training entry point: it learns, resumes exactly after SIGKILL, runs under torchrun, exports."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import pixelcnn
from pixelcnn.data import load_dataset
from pixelcnn.hub import read_metrics
from pixelcnn.surgery import fit_condition_statistics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> Path:
    """8x8 grey images in two learnable classes: horizontal and vertical stripes, with noise."""
    root = tmp_path_factory.mktemp("stripes")
    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("test", 8)):
        for name in ("horizontal", "vertical"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                base = np.tile((np.arange(8) % 2 * 200 + 20)[:, None], (1, 8))
                img = base if name == "horizontal" else base.T
                img = np.clip(img + rng.integers(-15, 16, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{k}.png")
    return root


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", f"folder:{data}", "--out_dir", str(out), "--image_size", "8",
            "--num_classes", "2", "--threads", "1", "--no-progress", "--eval_every", "0", "--sample_every", "0",
            "--final_eval_images", "16", *extra]


def run_train(args: list[str], *, torchrun: int = 0, timeout: int = 600) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "pixelcnn.train"]
    if torchrun:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
                    "-m", "pixelcnn.train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(launcher + args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_a_tiny_model_overfits_one_batch_and_exports_an_honest_card(stripes, tmp_path):
    out = tmp_path / "run"
    result = run_train(train_args(stripes, out, "--train_images", "8", "--batch_size", "8", "--steps", "250",
                                  "--lr", "1e-2", "--warmup_steps", "1", "--ema_decay", "0.5",
                                  "--hidden_channels", "32", "--head_channels", "64", "--n_layers", "3"))
    assert result.returncode == 0, result.stderr[-3000:]
    model = pixelcnn.from_pretrained(out / "model")
    train = load_dataset(f"folder:{stripes}", "train")
    batch, labels = train.images[:8].long(), train.labels[:8]
    first = metrics(out)[0]["train_bpd"]
    with torch.no_grad():
        final = model.bits_per_dim(batch, labels).mean().item()
    assert final < 0.5 * first, (first, final)

    # the card's figure is what a fresh evaluation of the exported model measures
    test = load_dataset(f"folder:{stripes}", "test")
    with torch.no_grad():
        fresh = model.bits_per_dim(test.images[:16].long(), test.labels[:16]).mean().item()
    recorded = read_metrics(out / "model")
    assert abs(recorded["test_bpd"] - fresh) < 1e-4
    card = (out / "model" / "README.md").read_text()
    assert f"**{recorded['test_bpd']:.4f}**" in card  # the card is generated from metrics.json
    assert "250 x 8" in card and "hardware" in card and "wall time" in card
    assert (out / "curves.png").stat().st_size > 0


def test_sigkill_then_resume_ends_with_the_same_weights(stripes, tmp_path):
    # condition dropout draws from the checkpointed RNG too, so it is part of the exact resume
    args = ["--steps", "120", "--ckpt_every", "30", "--hidden_channels", "32", "--n_layers", "4",
            "--head_channels", "32", "--cond_dropout", "0.3"]
    reference = tmp_path / "reference"
    assert run_train(train_args(stripes, reference, *args)).returncode == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pixelcnn.train", *train_args(stripes, killed, *args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert 30 <= step_at_kill < 120, "the run was not interrupted before its end"
    assert not (killed / "model").exists()

    resumed = run_train(train_args(stripes, killed, *args, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed {killed} at step {step_at_kill}" in resumed.stdout
    a = torch.load(reference / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    exported_a, exported_b = load_file(reference / "model" / "model.safetensors"), load_file(killed / "model" / "model.safetensors")
    assert all(torch.equal(exported_a[k], exported_b[k]) for k in exported_a)
    steps = [m["step"] for m in metrics(killed) if "train_bpd" in m]
    assert steps == sorted(set(steps)), "log lines after the checkpoint were repeated"


def test_torchrun_with_two_cpu_processes_keeps_ranks_identical(stripes, tmp_path):
    out = tmp_path / "ddp"
    result = run_train(train_args(stripes, out, "--steps", "40", "--batch_size", "8", "--lr", "1e-2",
                                  "--warmup_steps", "1", "--log_every", "5"), torchrun=2)
    assert result.returncode == 0, result.stderr[-3000:]
    sums = {}
    for line in result.stdout.splitlines():
        if "parameter checksum" in line:
            words = line.split()
            sums[words[1]] = words[-1]
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], result.stdout
    losses = [m["train_bpd"] for m in metrics(out) if "train_bpd" in m]
    assert losses[-1] < losses[0] - 0.5
    assert "torchrun --nproc_per_node=2" in (out / "model" / "README.md").read_text()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs for DDP on NCCL")
def test_torchrun_on_gpus_with_nccl_keeps_ranks_identical(stripes, tmp_path):
    out = tmp_path / "nccl"
    result = run_train(train_args(stripes, out, "--steps", "20", "--batch_size", "8", "--device", "cuda",
                                  "--warmup_steps", "1"), torchrun=2)
    assert result.returncode == 0, result.stderr[-3000:]
    sums = {line.split()[1]: line.split()[-1] for line in result.stdout.splitlines() if "parameter checksum" in line}
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], result.stdout


def test_a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(stripes, tmp_path):
    out = tmp_path / "run"
    assert run_train(train_args(stripes, out, "--steps", "5", "--ckpt_every", "5")).returncode == 0
    before = (out / "checkpoint.pt").read_bytes()
    result = run_train(train_args(stripes, out, "--steps", "30", "--ckpt_every", "5", "--lr", "1e30",
                                  "--grad_clip", "0", "--warmup_steps", "1", "--resume"))
    assert result.returncode == 1
    assert "the loss became" in result.stderr and "last good checkpoint (step 5" in result.stderr
    assert (out / "checkpoint.pt").read_bytes() == before


def test_training_errors_are_clear(stripes, tmp_path):
    result = run_train(train_args(stripes, tmp_path / "rgb", "--image_channels", "3", "--hidden_channels", "9",
                                  "--head_channels", "9", "--steps", "2"))
    assert result.returncode == 1
    assert "1-channel images but the model expects image_channels=3" in result.stderr

    out = tmp_path / "twice"
    assert run_train(train_args(stripes, out, "--steps", "2", "--ckpt_every", "1")).returncode == 0
    again = run_train(train_args(stripes, out, "--steps", "2"))
    assert again.returncode == 1 and "already holds a run" in again.stderr and "--resume" in again.stderr

    missing = run_train(train_args(tmp_path / "no-such-folder", tmp_path / "x"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


@pytest.mark.parametrize("conditioning", ["vector", "spatial"])
def test_vector_and_spatial_conditions_train_from_aligned_vectors(stripes, tmp_path, conditioning):
    """(image, vector) pairs: one .npy per split, aligned with the images; the vector says the class."""
    for split in ("train", "test"):
        labels = load_dataset(f"folder:{stripes}", split).labels
        vectors = torch.nn.functional.one_hot(labels, 2).float() * 2 - 1
        np.save(tmp_path / f"vec_{split}.npy", torch.cat([vectors, torch.zeros(len(labels), 1)], 1).numpy())
    out = tmp_path / conditioning
    result = run_train(train_args(stripes, out, "--conditioning", conditioning, "--cond_dim", "3",
                                  "--spatial_channels", "4", "--vectors", str(tmp_path / "vec_{split}.npy"),
                                  "--steps", "6", "--log_every", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    model = pixelcnn.from_pretrained(out / "model")
    assert model.config.conditioning == conditioning and len(metrics(out)) >= 3
    assert read_metrics(out / "model")["test_bpd"] < 8.5

    if conditioning == "vector":  # what follows takes the same path for both kinds: checked once
        wrong = run_train(train_args(stripes, tmp_path / "wrong", "--conditioning", conditioning, "--cond_dim", "5",
                                     "--vectors", str(tmp_path / "vec_{split}.npy"), "--steps", "2"))
        assert wrong.returncode == 1 and "vectors of 3 but the model is conditioned on vectors of cond_dim=5" in wrong.stderr
        return

    # --standardise_cond: the exported model reads h standardised with the training vectors' statistics
    out = tmp_path / f"{conditioning}-standardised"
    result = run_train(train_args(stripes, out, "--conditioning", conditioning, "--cond_dim", "3",
                                  "--spatial_channels", "4", "--vectors", str(tmp_path / "vec_{split}.npy"),
                                  "--steps", "2", "--standardise_cond"))
    assert result.returncode == 0, result.stderr[-3000:]
    train_vectors = torch.from_numpy(np.load(tmp_path / "vec_train.npy"))
    condition = pixelcnn.from_pretrained(out / "model").condition
    assert torch.allclose(condition.cond_mean, train_vectors.mean(0))
    assert torch.allclose(condition.cond_std, train_vectors.std(0).clamp_min(1e-6))
    # it starts as an unconditional model (every V = 0), and training moves V
    fresh = pixelcnn.build_model(condition.config)
    assert fit_condition_statistics(fresh, load_dataset(f"folder:{stripes}", "train").with_vectors(train_vectors))
    v_names = [name for name in fresh.state_dict() if ".cond_" in name and name.endswith("proj.weight")]
    assert v_names and all(fresh.state_dict()[name].abs().sum() == 0 for name in v_names)
    trained = load_file(out / "model" / "model.safetensors")
    assert all(trained[name].abs().sum() > 0 for name in v_names)
    # a warm start from an unconditional model fits the statistics too
    unconditional = tmp_path / f"{conditioning}-none"
    assert run_train(train_args(stripes, unconditional, "--conditioning", "none", "--steps", "1")).returncode == 0
    warm = tmp_path / f"{conditioning}-warm"
    result = run_train(train_args(stripes, warm, "--conditioning", conditioning, "--cond_dim", "3",
                                  "--spatial_channels", "4", "--vectors", str(tmp_path / "vec_{split}.npy"),
                                  "--steps", "1", "--standardise_cond", "--init_from", str(unconditional / "model")))
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.allclose(pixelcnn.from_pretrained(warm / "model").condition.cond_mean, train_vectors.mean(0))


def test_the_faces_preset_standardises_its_embedding_but_not_its_sketch_nor_its_unconditional_twin():
    from pixelcnn.presets import parse_args

    train, model = parse_args(["--preset", "faces-portrait"])
    assert model.conditioning == "image" and not model.standardise_cond and train.sketch_from  # the sketch, as it is
    train, model = parse_args(["--preset", "faces-portrait", "--conditioning", "spatial"])
    assert model.standardise_cond and train.sketch_from is None  # the embedding itself, standardised
    train, model = parse_args(["--preset", "faces-portrait", "--conditioning", "none"])
    assert not model.standardise_cond and train.sketch_from is None
    assert not parse_args(["--preset", "faces-portrait", "--no-standardise_cond"])[1].standardise_cond
    assert not parse_args(["--preset", "cifar10-class"])[1].standardise_cond


def test_condition_dropout_decides_whether_the_null_is_learned():
    from pixelcnn.presets import parse_args

    train, model = parse_args(["--preset", "faces-portrait"])
    assert train.cond_dropout == 0.15 and model.learned_null and model == pixelcnn.presets.MODEL_PRESETS["faces-portrait"]
    assert not parse_args(["--preset", "faces-portrait", "--cond_dropout", "0"])[1].learned_null
    twin_train, twin = parse_args(["--preset", "faces-portrait", "--conditioning", "none"])
    assert twin_train.cond_dropout == 0 and not twin.learned_null  # nothing to drop
    assert parse_args(["--preset", "mnist-class", "--cond_dropout", "0.1"])[1].learned_null
    with pytest.raises(ValueError, match="cond_dropout"):
        parse_args(["--preset", "mnist-class", "--cond_dropout", "1"])


def test_the_original_pixelcnn_trains_through_the_cli(stripes, tmp_path):
    out = tmp_path / "original"
    result = run_train(train_args(stripes, out, "--architecture", "original", "--steps", "30", "--lr", "1e-2",
                                  "--warmup_steps", "1", "--log_every", "5", "--hidden_channels", "16"))
    assert result.returncode == 0, result.stderr[-3000:]
    model = pixelcnn.from_pretrained(out / "model")
    assert type(model) is pixelcnn.PixelCNN
    losses = [m["train_bpd"] for m in metrics(out) if "train_bpd" in m]
    assert losses[-1] < losses[0]


def test_an_encoder_trains_end_to_end_and_exports_a_composite(stripes, tmp_path):
    out = tmp_path / "autoencoder"
    result = run_train(train_args(stripes, out, "--encoder", "conv", "--encoder_channels", "4",
                                  "--conditioning", "spatial", "--cond_dim", "2", "--spatial_channels", "4",
                                  "--steps", "4", "--sample_every", "4"))
    assert result.returncode == 0, result.stderr[-3000:]
    model = pixelcnn.from_pretrained(out / "model")
    assert isinstance(model, pixelcnn.PixelCNNAutoEncoder)
    assert (out / "model" / "encoder" / "model.safetensors").is_file()
    assert (out / "model" / "decoder" / "config.json").is_file()
    assert Image.open(out / "samples" / "step_0000004.png").size[0] > 0


def test_a_sketch_decoder_starts_from_an_mse_autoencoder(stripes, tmp_path):
    """--code_from: the encoder and the sketch m(h) are the MSE auto-encoder's, and with --freeze_code
    they stay so while the PixelCNN learns: the decoder's map is that model's reconstruction in [-1, 1]."""
    mse, out = tmp_path / "mse", tmp_path / "sketch"
    code = ("--encoder", "conv", "--encoder_channels", "4", "--cond_dim", "2")
    assert run_train(train_args(stripes, mse, *code, "--decoder", "mse", "--conditioning", "vector",
                                "--steps", "3")).returncode == 0
    result = run_train(train_args(stripes, out, *code, "--conditioning", "sketch", "--spatial_channels", "4",
                                  "--code_from", str(mse / "model"), "--freeze_code", "--steps", "3", "--lr", "1e-2",
                                  "--cond_dropout", "0.5"))
    assert result.returncode == 0, result.stderr[-3000:]
    # condition dropout reaches an auto-encoder's code; its learned null learns while the code stays frozen
    assert "learns from the dropped ones" in result.stdout
    assert "condition dropout 0.5" in (out / "model" / "README.md").read_text()
    assert "m(h), the sketch, copied from" in result.stdout + result.stderr and "frozen: " in result.stdout
    model, baseline = pixelcnn.from_pretrained(out / "model"), pixelcnn.from_pretrained(mse / "model")
    x = load_dataset(f"folder:{stripes}", "test").images[:3]
    with torch.no_grad():
        code = model.encode(x)
        torch.testing.assert_close(code, baseline.encode(x))  # equal up to the EMA's rounding
        sketch = model.decoder.condition_input(code, 3)
        assert sketch.shape == x.shape and torch.allclose(sketch, baseline.decode(code) * 2 - 1)
    moved = [name for name, p in model.decoder.named_parameters() if not name.startswith("condition.")
             and not torch.equal(p, pixelcnn.build_model(model.config).state_dict()[name])]
    assert moved, "the PixelCNN itself must learn"
    assert model.decoder.config.learned_null
    start = read_metrics(mse / "model") and baseline.encode(load_dataset(f"folder:{stripes}", "train").images).mean(0)
    assert not torch.allclose(model.decoder.condition.null_h, start), "the learned null did not learn"
    assert "trained on mean squared error and then frozen" in (out / "model" / "README.md").read_text()

    from pixelcnn.surgery import TrainingError, load_code_weights

    with pytest.raises(TrainingError, match="from an MSE auto-encoder, got a PixelCNNAutoEncoder"):
        load_code_weights(model, str(out / "model"))
    narrow = pixelcnn.PixelCNNAutoEncoder(model.encoder, pixelcnn.build_model(model.config.replace(spatial_channels=3)))
    with pytest.raises(TrainingError, match="set --spatial_channels to its 4"):
        load_code_weights(narrow, str(mse / "model"))


def test_a_continued_run_keeps_the_history_of_the_runs_before_it(stripes, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_train(train_args(stripes, first, "--steps", "3")).returncode == 0
    assert run_train(train_args(stripes, second, "--steps", "2", "--init_from", str(first / "model"))).returncode == 0
    resumed = run_train(train_args(stripes, second, "--steps", "4", "--init_from", str(first / "model"), "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = read_metrics(second / "model")["history"]
    assert [run["steps"] for run in history] == [3, 4] and history[1]["init_from"] == str(first / "model")
    assert "| 2 |" in (second / "model" / "README.md").read_text()  # the card lists both runs


def test_the_mse_baseline_trains_through_the_cli_and_reports_psnr(stripes, tmp_path):
    out = tmp_path / "mse"
    result = run_train(train_args(stripes, out, "--encoder", "conv", "--decoder", "mse", "--encoder_channels", "4",
                                  "--conditioning", "vector", "--cond_dim", "2", "--steps", "40", "--lr", "1e-2",
                                  "--warmup_steps", "1", "--log_every", "5", "--sample_every", "40"))
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [m["train_mse"] for m in metrics(out) if "train_mse" in m]
    assert losses[-1] < 0.9 * losses[0] and not any("train_bpd" in m for m in metrics(out))
    model = pixelcnn.from_pretrained(out / "model")
    assert isinstance(model, pixelcnn.MSEAutoEncoder)
    saved = read_metrics(out / "model")
    assert 0 < saved["test_mse"] < 0.5 * losses[0] and saved["history"][0]["test_mse"] == saved["test_mse"]
    card = (out / "model" / "README.md").read_text()
    assert "MSE auto-encoder" in card and "PSNR" in card and f"{saved['test_mse']:.4f}" in card
    assert Image.open(out / "samples" / "step_0000040.png").size[0] > 0
    refused = run_train(train_args(stripes, tmp_path / "bad", "--decoder", "mse", "--steps", "2"))
    assert refused.returncode == 1 and "needs --encoder conv" in refused.stderr


def test_condition_dropout_learns_a_null_and_is_recorded(stripes, tmp_path):
    out = tmp_path / "dropout"
    result = run_train(train_args(stripes, out, "--steps", "60", "--cond_dropout", "0.5", "--lr", "1e-2",
                                  "--warmup_steps", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    model = pixelcnn.from_pretrained(out / "model")
    assert model.config.learned_null
    null = model.condition.null_h
    # it started as the class frequencies (1/2 each) and learnt from the dropped images
    assert (null - 0.5).abs().max() > 1e-3, null
    last = read_metrics(out / "model")["history"][-1]
    assert last["cond_dropout"] == 0.5
    assert "condition dropout 0.5" in (out / "model" / "README.md").read_text()
    # without dropout the null is the average condition: here the two classes' frequencies
    plain = tmp_path / "plain"
    assert run_train(train_args(stripes, plain, "--steps", "2")).returncode == 0
    assert torch.allclose(pixelcnn.from_pretrained(plain / "model").condition.null_h, torch.tensor([0.5, 0.5]))


def test_a_time_budget_ends_the_run_in_time_with_its_schedule_finished(stripes, tmp_path):
    out = tmp_path / "budget"
    budget_min = 0.4
    result = run_train(train_args(stripes, out, "--steps", "1000000", "--time_budget", str(budget_min),
                                  "--hidden_channels", "16", "--n_layers", "3", "--log_every", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    last = read_metrics(out / "model")["history"][-1]
    assert last["time_budget_min"] == budget_min and last["stopped_by_budget"]
    assert 20 <= last["steps"] < 1000000 and last["wall_time_s"] < budget_min * 60
    # the planned total moved the cosine schedule: the last step ran at (nearly) the final learning rate
    rows = [m for m in metrics(out) if "lr" in m]
    assert rows[-1]["step"] == last["steps"]
    assert rows[-1]["lr"] < 0.2 * max(r["lr"] for r in rows), rows[-1]
    assert "time budget 0.4 min" in (out / "model" / "README.md").read_text()


def test_the_gpu_portrait_command_runs_on_a_cpu_with_a_tiny_budget(tmp_path):
    """The one command prepared for a CUDA machine (docs/portraits.md): the shipped PixelCNN grown to
    the GPU size and trained to read the shipped sketch, here with a 6-second budget on the CPU."""
    data = ROOT.parent / "shared" / "data"
    if not (data / "celeba_faces32_large").is_dir():
        pytest.skip("needs ../shared/data/celeba_faces32_large")
    out = tmp_path / "faces-gpu"
    shipped_dir = ROOT / "weights" / "faces-portrait"
    result = run_train(["--preset", "faces-gpu", "--data_dir", str(data), "--init_from", str(shipped_dir),
                        "--out_dir", str(out), "--time_budget", "0.1", "--train_images", "512",
                        "--batch_size", "8", "--eval_images", "16", "--final_eval_images", "32", "--threads", "1",
                        "--no-progress"])
    assert result.returncode == 0, result.stderr[-3000:]
    model = pixelcnn.from_pretrained(out / "model")  # the shipped sketch, and a larger PixelCNN that reads it
    assert isinstance(model, pixelcnn.PortraitModel) and (out / "model" / "sketch" / "README.md").is_file()
    assert model.config.learned_null and model.config.conditioning == "image"
    shipped = pixelcnn.from_pretrained(shipped_dir).config
    assert model.config.hidden_channels > shipped.hidden_channels, "a GPU run gets a larger model than the CPU one"
    assert "grew 8 layers x 48 channels, kernel 3, into 10 layers x 64 channels, kernel 3" in result.stdout
    history = read_metrics(out / "model")["history"]
    assert history[:-1] == read_metrics(shipped_dir)["history"], "the run continues the shipped model's history"
    card = (out / "model" / "README.md").read_text()
    assert "celeba-faces32" in card and "condition dropout 0.15" in card and "time budget 0.1 min" in card


def test_the_face_sketch_trains_alone_through_the_cli_and_draws_what_its_vector_says(stripes, tmp_path):
    """--decoder sketch: vector -> image on MSE. Here the vector says the stripes' direction, so the
    sketch of each vector must be that direction's stripes, and the exported card gives its test MSE."""
    for split in ("train", "test"):
        labels = load_dataset(f"folder:{stripes}", split).labels
        np.save(tmp_path / f"vec_{split}.npy", torch.nn.functional.one_hot(labels, 2).float().numpy())
    out = tmp_path / "sketch"
    result = run_train(train_args(stripes, out, "--decoder", "sketch", "--conditioning", "vector", "--cond_dim", "2",
                                  "--encoder_channels", "8", "--vectors", str(tmp_path / "vec_{split}.npy"),
                                  "--steps", "150", "--batch_size", "16", "--lr", "1e-2", "--warmup_steps", "5",
                                  "--log_every", "10", "--sample_every", "150"))
    assert result.returncode == 0, result.stderr[-3000:]
    model = pixelcnn.from_pretrained(out / "model")
    assert isinstance(model, pixelcnn.EmbeddingSketch)
    saved = read_metrics(out / "model")
    losses = [m["train_mse"] for m in metrics(out) if "train_mse" in m]
    assert saved["test_mse"] < 0.3 * losses[0]
    sketches = model.sketch(torch.eye(2))[:, 0] * 255  # (2, 8, 8): horizontal, vertical
    rows, columns = sketches.std(dim=2).mean(1), sketches.std(dim=1).mean(1)  # variation along a row / a column
    assert columns[0] > 3 * rows[0] and rows[1] > 3 * columns[1], (rows, columns)
    assert "face sketch" in (out / "model" / "README.md").read_text()
    assert torch.allclose(model.cond_mean, torch.tensor([0.5, 0.5]))
    refused = run_train(train_args(stripes, tmp_path / "bad", "--decoder", "sketch", "--cond_dropout", "0.2",
                                   "--conditioning", "vector", "--cond_dim", "2",
                                   "--vectors", str(tmp_path / "vec_{split}.npy"), "--steps", "2"))
    assert refused.returncode == 1 and "no --cond_dropout" in refused.stderr


def test_a_pixelcnn_learns_to_read_each_photos_sketch_and_exports_a_portrait_model(stripes, tmp_path):
    """--conditioning image --sketch_from: the PixelCNN's condition is each photo's sketch at its own z
    (posterior_sketches); the export joins the sketch and the PixelCNN as one PortraitModel, with the
    sketch's own card in sketch/, and --init_from such a model continues its PixelCNN."""
    from pixelcnn.sketch import posterior_sketches

    for split in ("train", "test"):
        labels = load_dataset(f"folder:{stripes}", split).labels
        np.save(tmp_path / f"vec_{split}.npy", torch.nn.functional.one_hot(labels, 2).float().numpy())
    vectors = ("--vectors", str(tmp_path / "vec_{split}.npy"))
    sketch_out = tmp_path / "sketch"
    result = run_train(train_args(stripes, sketch_out, "--decoder", "sketch", "--conditioning", "vector", "--cond_dim",
                                  "2", "--encoder_channels", "4", "--sketch_latent", "2", "--mirror", *vectors,
                                  "--steps", "20", "--batch_size", "16"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "portrait"
    result = run_train(train_args(stripes, out, "--conditioning", "image", "--spatial_channels", "3", "--sketch_from",
                                  str(sketch_out / "model"), *vectors, "--steps", "30", "--cond_dropout", "0.2",
                                  "--lr", "1e-2", "--warmup_steps", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    model = pixelcnn.from_pretrained(out / "model")
    assert isinstance(model, pixelcnn.PortraitModel) and model.decoder.config.conditioning == "image"
    assert (out / "model" / "sketch" / "README.md").read_text() == (sketch_out / "model" / "README.md").read_text()
    assert "portrait model" in (out / "model" / "README.md").read_text()
    # the card's test figure is the PixelCNN's bits/dim given each test photo's own sketch
    test = load_dataset(f"folder:{stripes}", "test")
    sketches = posterior_sketches(model.sketch, test.images, torch.from_numpy(np.load(tmp_path / "vec_test.npy")))
    with torch.no_grad():
        bpd = model.decoder.bits_per_dim(test.images[:16].long(), sketches[:16]).mean().item()
    assert abs(bpd - read_metrics(out / "model")["test_bpd"]) < 1e-3
    # continuing it: its PixelCNN starts from the saved one (and keeps its learnt null)
    again = tmp_path / "again"
    result = run_train(train_args(stripes, again, "--conditioning", "image", "--spatial_channels", "3",
                                  "--sketch_from", str(out / "model"), "--init_from", str(out / "model"), *vectors,
                                  "--steps", "1", "--cond_dropout", "0.2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "initialised from" in result.stdout and "null condition starts as the average" not in result.stdout
    refused = run_train(train_args(stripes, tmp_path / "bad", "--sketch_from", str(out / "model"), *vectors,
                                   "--steps", "1"))
    assert refused.returncode == 1 and "needs --conditioning image" in refused.stderr


def test_the_multi_tensor_ema_is_torchs_averaged_model_with_the_warm_up_and_reads_its_checkpoints():
    """EMA updates with foreach ops and no host sync; the weights are those of AveragedModel with the
    same warm-up decay, and the state dicts share keys (a checkpoint of either resumes in the other)."""
    from torch.optim.swa_utils import AveragedModel

    from pixelcnn.runtime import EMA, ema_decay

    torch.manual_seed(0)
    model = pixelcnn.build_model(pixelcnn.PixelCNNConfig(image_channels=1, image_size=6, hidden_channels=8, n_layers=2,
                                                         head_channels=8, conditioning="class", num_classes=3))

    def reference_average(averaged, current, num_averaged):
        d = ema_decay(0.9, int(num_averaged))
        return averaged * d + current * (1 - d)

    ours, reference = EMA(model, 0.9), AveragedModel(model, avg_fn=reference_average)
    for step in range(12):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
        ours.update_parameters(model)
        reference.update_parameters(model)
    for (name, a), b in zip(ours.module.state_dict().items(), reference.module.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert set(ours.state_dict()) == set(reference.state_dict())
    resumed = EMA(model, 0.9)
    resumed.load_state_dict(reference.state_dict())
    assert resumed.updates == 12 and int(resumed.n_averaged) == 12


def test_the_data_order_is_one_seeded_permutation_per_epoch():
    from pixelcnn.runtime import DataOrder

    order = DataOrder(10, seed=3)
    epoch0 = torch.cat([order.batch(0, k, 5) for k in (0, 5)])
    assert sorted(epoch0.tolist()) == list(range(10))
    epoch1 = order.batch(1, 0, 10)
    assert not torch.equal(epoch0, epoch1) and torch.equal(DataOrder(10, seed=3).batch(1, 0, 10), epoch1)
    assert torch.equal(order.batch(0, 5, 5), epoch0[5:])  # back to an earlier epoch: the same order


@pytest.mark.parametrize("trainable", ["class", "spatial", "image", "autoencoder", "sketch"])
def test_the_training_objective_compiles_to_one_graph(trainable):
    """No check inside the training step reads a value back from the device: under torch.compile the
    objective is one graph (torch._dynamo.explain), where the checked public path breaks it up."""
    from conftest import example_condition, random_images, tiny_config

    from pixelcnn.codecs import ConvEncoder, EncoderConfig
    from pixelcnn.sketch import EmbeddingSketch, SketchConfig
    from pixelcnn.train import Objective

    torch.manual_seed(0)
    if trainable == "sketch":
        model = EmbeddingSketch(SketchConfig(image_size=8, cond_dim=4, channels=4, latent_dim=2, encoder_channels=4))
        x, cond, dropout = torch.randint(0, 256, (4, 3, 8, 8)), torch.randn(4, 4), 0.0
    elif trainable == "autoencoder":
        decoder = pixelcnn.build_model(tiny_config(channels=3, size=(8, 8), conditioning="spatial", cond_dim=4,
                                                   learned_null=True))
        model = pixelcnn.PixelCNNAutoEncoder(ConvEncoder(EncoderConfig(image_size=8, code_dim=4, channels=4)), decoder)
        x, cond, dropout = random_images(decoder.config, 4), None, 0.2
    else:
        config = tiny_config(channels=3, conditioning=trainable, learned_null=True)
        model = pixelcnn.build_model(config)
        x, cond, dropout = random_images(config, 4), example_condition(config, 4, dtype=torch.float32), 0.2
    explained = torch._dynamo.explain(Objective(model, dropout))(x, cond)
    assert explained.graph_break_count == 0, [str(b.reason)[:300] for b in explained.break_reasons]
    if trainable == "class":  # the checked path: each check is a break
        checked = torch._dynamo.explain(lambda a, b: model.loss(a, b, cond_dropout=dropout))(x, cond)
        assert checked.graph_break_count > 0


def test_a_users_own_folder_without_a_test_split_gets_an_honest_held_out_figure(stripes, tmp_path):
    """`--data folder:photos` without train/ and test/: the card's test figure is measured on a seeded
    tenth of the files that training never saw, and the card and metrics.json say so."""
    import shutil

    flat = tmp_path / "photos"
    for name in ("horizontal", "vertical"):
        shutil.copytree(stripes / "train" / name, flat / name)
    out = tmp_path / "run"
    result = run_train(train_args(flat, out, "--steps", "3"))
    assert result.returncode == 0, result.stderr[-3000:]
    saved = read_metrics(out / "model")
    assert saved["split"] == {"held_out": "file", "fraction": 0.1, "seed": 0, "test_images": 5, "train_images": 43}
    assert saved["train_images"] == 43 and saved["test_images"] == 5
    test = load_dataset(f"folder:{flat}", "test")
    model = pixelcnn.from_pretrained(out / "model")
    with torch.no_grad():
        fresh = model.bits_per_dim(test.images.long(), test.labels).mean().item()
    assert abs(saved["test_bpd"] - fresh) < 1e-4
    assert "**Test split.**" in (out / "model" / "README.md").read_text()
