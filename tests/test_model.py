"""Config, likelihoods, conditioning, input checks and the Hub round trip."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

import pixelcnn
from pixelcnn import CheckpointError, GatedPixelCNN, PixelCNN, PixelCNNConfig
from pixelcnn.receptive_field import random_model

from conftest import example_condition, random_images, tiny_config

ARCHS = {"gated": GatedPixelCNN, "original": PixelCNN}


@pytest.mark.parametrize("size", [28, (5, 9)])
def test_config_round_trips_through_json(tmp_path, size):
    config = PixelCNNConfig(image_channels=3, image_size=size, levels=16, hidden_channels=30,
                            conditioning="spatial", cond_dim=7)
    assert PixelCNNConfig.from_json(config.to_json()) == config
    config.to_json(tmp_path / "c.json")
    assert PixelCNNConfig.from_json(tmp_path / "c.json") == config
    assert (config.height, config.width) == ((28, 28) if size == 28 else (5, 9))


def test_class_names_round_trip_and_are_checked():
    config = PixelCNNConfig(conditioning="class", num_classes=2, class_names=["cat", "dog"])
    assert PixelCNNConfig.from_json(config.to_json()) == config and config.class_name(1) == "dog"
    assert "class_names" not in PixelCNNConfig().to_dict() and PixelCNNConfig().class_name(3) == "3"
    with pytest.raises(ValueError, match="class_names must name each"):
        PixelCNNConfig(conditioning="class", num_classes=3, class_names=["cat", "dog"])


@pytest.mark.parametrize("bad, message", [
    (dict(image_channels=2), "image_channels"),
    (dict(levels=1), "levels"),
    (dict(kernel_size=4), "kernel_size"),
    (dict(image_channels=3, hidden_channels=2), "at least image_channels"),
    (dict(conditioning="class"), "num_classes"),
    (dict(conditioning="vector"), "cond_dim"),
    (dict(conditioning="text"), "conditioning"),
    (dict(image_size=(4, 4, 4)), "image_size"),
])
def test_invalid_config_names_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        PixelCNNConfig(**bad)


@pytest.mark.parametrize("architecture", ["gated", "original"])
def test_log_prob_and_bits_per_dim_match_the_softmax(architecture):
    config = tiny_config(channels=3, levels=8)
    model = random_model(architecture, config)
    x = random_images(config, 2)
    logits = model(x)
    assert logits.shape == (2, 8, 3, 5, 6)
    manual = F.log_softmax(logits, dim=1).gather(1, x[:, None]).squeeze(1).flatten(1).sum(1)
    torch.testing.assert_close(model.log_prob(x), manual)
    torch.testing.assert_close(model.bits_per_dim(x), -manual / (3 * 5 * 6 * math.log(2)))


def test_a_uniform_model_costs_log2_levels_bits_per_dim():
    config = tiny_config(channels=3, levels=256)
    model = GatedPixelCNN(config)
    with torch.no_grad():
        model.head.logits.weight.zero_()
        model.head.logits.bias.zero_()
    bpd = model.bits_per_dim(random_images(config, 3))
    torch.testing.assert_close(bpd, torch.full((3,), 8.0))


@pytest.mark.parametrize("architecture", ["gated", "original"])
@pytest.mark.parametrize("conditioning", ["class", "vector", "spatial"])
def test_each_conditioning_mode_changes_the_output(architecture, conditioning):
    config = tiny_config(channels=3, conditioning=conditioning)
    model = random_model(architecture, config)
    x = random_images(config, 2)
    cond = example_condition(config, 2)
    other = (cond + 1) % config.num_classes if conditioning == "class" else cond + 1
    with torch.no_grad():
        a, b = model(x, cond), model(x, other)
    # every image and every sub-pixel position responds to its condition
    changed = (a - b).abs().amax(dim=(1, 2))  # (B, H, W)
    assert (changed > 1e-6).all()


def test_spatial_condition_is_location_dependent():
    config = tiny_config(channels=1, conditioning="spatial", size=(16, 12))
    model = random_model("gated", config)
    s = model.condition_input(example_condition(config, 2), 2)
    assert s.shape == (2, config.spatial_channels, 16, 12)
    assert not torch.allclose(s[..., :8, :], s[..., 8:, :])


@pytest.mark.parametrize("architecture", ["gated", "original"])
@pytest.mark.parametrize("conditioning", ["none", "class", "vector", "spatial", "sketch", "image"])
def test_every_parameter_gets_a_gradient(architecture, conditioning):
    """No dead weights: every parameter (every link, bias and condition map) influences the loss."""
    config = tiny_config(channels=3, conditioning=conditioning, n_layers=3)
    model = random_model(architecture, config)
    x = random_images(config, 2)
    model.bits_per_dim(x, example_condition(config, 2)).sum().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters that never influence the loss: {dead}"


@pytest.mark.parametrize("architecture", ["gated", "original"])
def test_bad_inputs_raise_clear_errors(architecture):
    config = tiny_config(channels=3, conditioning="class")
    model = ARCHS[architecture](config)
    x = random_images(config, 2)
    cond = torch.tensor([0, 4])
    with pytest.raises(ValueError, match="integer images"):
        model(x.float(), cond)
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        model(x + 256, cond)
    with pytest.raises(ValueError, match="shape"):
        model(x[:, :1], cond)
    with pytest.raises(ValueError, match="class ids must lie in"):
        model(x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="integer class ids"):
        model(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="conditioned on 'class'"):
        model(x)
    unconditional = ARCHS[architecture](tiny_config(channels=3))
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(x, cond)
    vector = ARCHS[architecture](tiny_config(channels=3, conditioning="vector"))
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        vector(x, torch.zeros(2, 4))


@pytest.mark.parametrize("architecture", ["gated", "original"])
@pytest.mark.parametrize("conditioning", ["none", "spatial"])
def test_save_and_load_give_identical_logits(tmp_path, architecture, conditioning):
    config = tiny_config(channels=3, conditioning=conditioning)
    model = random_model(architecture, config, dtype=torch.float32)
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["architecture"] == architecture
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()

    x, cond = random_images(config, 2), example_condition(config, 2, dtype=torch.float32)
    for loaded in (ARCHS[architecture].from_pretrained(tmp_path / "ckpt"),
                   pixelcnn.from_pretrained(str(tmp_path / "ckpt"))):
        assert type(loaded) is ARCHS[architecture] and loaded.config == model.config
        assert not loaded.training
        with torch.no_grad():
            assert torch.equal(model(x, cond), loaded(x, cond))


def test_loading_the_wrong_checkpoint_fails_clearly(tmp_path):
    config = tiny_config(channels=1)
    GatedPixelCNN(config).save_pretrained(tmp_path / "gated")

    with pytest.raises(CheckpointError, match="holds a 'gated' model"):
        PixelCNN.from_pretrained(tmp_path / "gated")

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        pixelcnn.from_pretrained(tmp_path / "empty")

    # Weights that do not fit the config: a silent partial load would leave random layers.
    other = tmp_path / "mismatch"
    GatedPixelCNN(tiny_config(channels=1, n_layers=2)).save_pretrained(other)
    (other / "config.json").write_text((tmp_path / "gated" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="missing: layers.2"):
        GatedPixelCNN.from_pretrained(other)

    corrupt = tmp_path / "corrupt"
    GatedPixelCNN(config).save_pretrained(corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        pixelcnn.from_pretrained(corrupt)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not a PixelCNN checkpoint"):
        pixelcnn.from_pretrained(foreign)


def test_hub_ids_go_through_huggingface_hub(tmp_path):
    """A repo id is fetched with huggingface_hub; offline and uncached, the error says so."""
    with pytest.raises(CheckpointError, match="unreachable"):
        pixelcnn.from_pretrained("someone/no-such-pixelcnn", cache_dir=tmp_path)
    with pytest.raises(CheckpointError, match="neither a local folder nor a valid Hub"):
        pixelcnn.from_pretrained("not a/valid//id")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda():
    config = tiny_config(channels=3, conditioning="class")
    model = GatedPixelCNN(config).cuda()
    x = random_images(config, 2).cuda()
    assert model.bits_per_dim(x, torch.tensor([0, 1]).cuda()).is_cuda


class RecordingServer:
    """A local HTTP server that answers every request with 200 and records what it was asked: the Hub
    itself, or a proxy in front of it (a proxied request names the full URL)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):  # noqa: N802 (the http.server name)
                outer.requests.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.end_headers()

            do_GET = do_HEAD  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def probe_in_a_fresh_process(tmp_path, code: str, **env_changes: str) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                                                            "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY")}
    env.update(HF_HOME=str(tmp_path), **env_changes)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    return result.stdout + result.stderr


def test_an_unreachable_hub_is_probed_once_per_process_and_fails_without_retries(tmp_path):
    """No retries with back-off against a Hub that cannot be reached: one probe, then the cache
    answers (here: nothing cached, so a clear error), however many files are asked for."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def refuse_after_accepting():  # a Hub that hangs up: every connection is counted, then closed
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection.recv(4096).split(b"\r\n")[0].decode())  # the request line
            connection.close()

    threading.Thread(target=refuse_after_accepting, daemon=True).start()
    code = ("import pixelcnn\nfor repo in ('nobody/nothing', 'nobody/else', 'nobody/third'):\n    try:\n"
            "        pixelcnn.from_pretrained(repo)\n    except pixelcnn.CheckpointError as e:\n        print(e)\n")
    out = probe_in_a_fresh_process(tmp_path, code, HF_ENDPOINT=f"http://127.0.0.1:{listener.getsockname()[1]}")
    listener.close()
    assert out.count("unreachable") == 3, out
    # huggingface_hub may also fetch its own agent registry once (GET /api/agent-harnesses): not a retry
    ours = [line for line in accepted if "agent-harnesses" not in line]
    assert ours == ["HEAD / HTTP/1.1"], f"requests to the Hub: {accepted}; expected one probe and no retries"


def test_the_hub_probe_goes_through_the_users_proxy(tmp_path):
    """Behind a proxy (HTTP_PROXY), the Hub is reached through it, as huggingface_hub's downloads are."""
    proxy = RecordingServer()
    try:
        code = "from pixelcnn.hub import hub_reachable\nprint('reachable', hub_reachable(), hub_reachable())\n"
        out = probe_in_a_fresh_process(tmp_path, code, HF_ENDPOINT="http://hub.invalid", HTTP_PROXY=proxy.url)
    finally:
        proxy.close()
    assert "reachable True True" in out, out
    assert proxy.requests == ["HEAD http://hub.invalid/"], proxy.requests  # one probe, through the proxy


def test_from_pretrained_is_explicit_about_device_and_dtype(tmp_path):
    config = tiny_config(channels=3, conditioning="class")
    GatedPixelCNN(config).save_pretrained(tmp_path / "m")
    model = pixelcnn.from_pretrained(tmp_path / "m", device="cpu", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu" and not model.training
    with pytest.raises(TypeError, match="devcie"):
        pixelcnn.from_pretrained(tmp_path / "m", device="cpu", devcie="typo")
    with pytest.raises(TypeError, match="dtype"):
        GatedPixelCNN.from_pretrained(tmp_path / "m", dtype="float16")


@pytest.mark.parametrize("conditioning, growth", [
    ("class", dict(n_layers=4)),
    ("class", dict(hidden_channels=20, head_channels=16)),
    ("class", dict(kernel_size=5)),
    ("spatial", dict(n_layers=4, hidden_channels=17, head_channels=13, kernel_size=5)),
])
def test_a_larger_model_starts_from_a_smaller_ones_likelihood_and_its_new_parts_learn(tmp_path, conditioning, growth):
    """`--init_from` a model with fewer layers or channels or a smaller kernel: the new layers,
    channels and taps add nothing until they learn, deeper or wider kernels see further, and all
    stays causal."""
    from pixelcnn.receptive_field import dependency_map
    from pixelcnn.surgery import load_initial_weights

    from test_causality import ZERO, causal_violations

    config = tiny_config(channels=3, size=(8, 8), conditioning=conditioning, n_layers=2)
    start = random_model("gated", config, dtype=torch.float32).eval()
    start.save_pretrained(tmp_path / "small")
    grown = pixelcnn.build_model(config.replace(**growth))
    load_initial_weights(grown, str(tmp_path / "small"))
    x, cond = random_images(config, 4, seed=1), example_condition(config, 4, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(grown.eval().bits_per_subpixel(x, cond), start.bits_per_subpixel(x, cond))

    before = {name: p.detach().clone() for name, p in grown.named_parameters()}
    optimiser = torch.optim.Adam(grown.parameters(), lr=1e-2)
    for _ in range(2):  # the first step moves the unread weights; the second reaches every new weight
        optimiser.zero_grad()
        grown.train().loss(x, cond).backward()
        optimiser.step()
    unmoved = [name for name, p in grown.named_parameters()
               if p.shape != start.state_dict().get(name, torch.empty(0)).shape and torch.equal(p, before[name])]
    assert not unmoved, f"grown tensors that did not learn: {unmoved}"
    with torch.no_grad():
        assert (grown.eval().bits_per_subpixel(x, cond) - start.bits_per_subpixel(x, cond)).abs().max() > 1e-3

    target = (7, 4, 0)
    field, start_field = (dependency_map(m, target, cond[:1]).sum() for m in (grown, start))
    assert field > start_field if {"n_layers", "kernel_size"} & set(growth) else field == start_field
    first = cond[:1].double() if cond.is_floating_point() else cond[:1]
    leak, influence = causal_violations(grown.double(), x[:1], first)
    assert leak <= ZERO < influence

    other = random_model("gated", config.replace(hidden_channels=20, n_layers=1))
    other.save_pretrained(tmp_path / "wider")
    with pytest.raises(Exception, match="beyond its conditioning"):  # a model never shrinks
        load_initial_weights(pixelcnn.build_model(config.replace(n_layers=4)), str(tmp_path / "wider"))
