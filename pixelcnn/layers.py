"""Building blocks: colour-group masks, the gated two-stack layer, masked convolutions, the output head.

Shapes: B batch, C image channels, p hidden channels, H x W image, k kernel size.

Sub-pixel order is raster order over pixels, then R, G, B inside a pixel. Hidden channels are split
into C contiguous colour groups; a feature of group c at pixel (i, j) may see:
    * every channel of every earlier pixel;
    * at pixel (i, j) itself, only input groups < c (mask "A", first layer) or <= c (mask "B", later).
The last layer's group c therefore sees exactly the sub-pixels before (i, j, c), and predicts it.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def raster_order(channels: int, height: int, width: int) -> Tensor:
    """Generation index of every sub-pixel, laid out like an image: (C, H, W) long, (i * W + j) * C + c."""
    return torch.arange(channels * height * width).view(height, width, channels).permute(2, 0, 1)


def channel_groups(n_channels: int, n_groups: int) -> Tensor:
    """Colour group of each of `n_channels` channels split into `n_groups` contiguous blocks: (n_channels,)."""
    return torch.arange(n_channels) * n_groups // n_channels


def colour_mask(out_groups: Tensor, in_groups: Tensor, mask_type: str) -> Tensor:
    """(out, in) float mask that lets group c see input groups < c ("A") or <= c ("B")."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    out_g, in_g = out_groups[:, None], in_groups[None, :]
    return (in_g < out_g if mask_type == "A" else in_g <= out_g).float()


def gate(x: Tensor) -> Tensor:
    """The paper's gated activation: (B, 2p, ...) split as [f, g] -> tanh(f) * sigmoid(g): (B, p, ...)."""
    f, g = x.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


def gate_(x: Tensor) -> Tensor:
    """`gate` for the sampler's one-pixel rows (B, 2p): overwrites the f half of x, saving two ops."""
    x.narrow(1, 0, x.shape[1] // 2).tanh_()
    return F.glu(x, dim=1)  # first half * sigmoid(second half)


def shift_down(x: Tensor) -> Tensor:
    """Move every row one down (zeros enter at the top): (B, ch, H, W) -> (B, ch, H, W)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


class ColourMaskedConv1x1(nn.Conv2d):
    """A 1x1 convolution whose output group c reads input groups <= c (mask B at the pixel itself)."""

    def __init__(self, in_channels: int, out_channels: int, image_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)
        mask = colour_mask(channel_groups(out_channels, image_channels),
                           channel_groups(in_channels, image_channels), "B")
        self.register_buffer("mask", mask[:, :, None, None], persistent=False)

    def masked_weight(self) -> Tensor:
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias)


class ConditionBias(nn.Module):
    """V h of the paper: a learned bias of `out_channels` from the condition.

    It reads h (B, F) for class / vector conditioning, giving a (B, out, 1, 1) bias that is the
    same at every location (eq. 4), or the map s = m(h) (B, S, H, W) for spatial conditioning,
    giving a location-dependent (B, out, H, W) bias through a 1x1 convolution (eq. 5).
    """

    def __init__(self, cond_features: int, out_channels: int, spatial: bool) -> None:
        super().__init__()
        self.spatial = spatial
        if spatial:
            self.proj = nn.Conv2d(cond_features, out_channels, 1, bias=False)
        else:
            self.proj = nn.Linear(cond_features, out_channels, bias=False)

    def forward(self, cond_input: Tensor) -> Tensor:
        if self.spatial:
            return self.proj(cond_input)
        return self.proj(cond_input)[:, :, None, None]


class GatedLayer(nn.Module):
    """One layer of the paper's Figure 2, on shifted (not masked) convolutions.

    Vertical stack: a (k//2+1) x k convolution over the rows at and above each row. Its output at row i
    sees rows <= i, so the horizontal stack only ever receives it shifted down by one row (rows < i).
    Horizontal stack: a 1 x (k//2+1) convolution over the current pixel and the k//2 to its left; only
    the current-pixel tap carries a colour mask. The vertical stack enters it through a 1x1 convolution
    ("vertical_to_horizontal"); nothing flows back. The horizontal stack ends in a 1x1 convolution and,
    after the first layer, a residual connection.

    forward: vertical (B, in, H, W), horizontal (B, in, H, W), optional condition biases (vertical,
    horizontal), each (B, 2p, 1, 1) or (B, 2p, H, W) -> vertical (B, p, H, W) (None for the last
    layer), horizontal (B, p, H, W).
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int, image_channels: int,
                 mask_type: str, cond_features: int = 0, spatial: bool = False, vertical_output: bool = True) -> None:
        super().__init__()
        p, k = hidden_channels, kernel_size
        # The last layer's vertical stack only feeds its horizontal stack: it has no gated output,
        # and so no vertical condition bias (it would be a weight that nothing reads).
        self.vertical_output = vertical_output
        self.pad = k // 2
        self.vertical = nn.Conv2d(in_channels, 2 * p, (k // 2 + 1, k))
        self.horizontal = nn.Conv2d(in_channels, 2 * p, (1, k // 2 + 1))
        self.vertical_to_horizontal = nn.Conv2d(2 * p, 2 * p, 1)
        self.horizontal_out = ColourMaskedConv1x1(p, p, image_channels)
        self.residual = mask_type == "B" and in_channels == p

        # W_f and W_g are one convolution with 2p outputs: [f (p) | g (p)], each split into colour groups.
        gate_groups = channel_groups(p, image_channels).repeat(2)
        in_groups = channel_groups(in_channels, image_channels)
        mask = torch.ones(2 * p, in_channels, 1, k // 2 + 1)
        mask[:, :, 0, -1] = colour_mask(gate_groups, in_groups, mask_type)  # the current pixel
        self.register_buffer("horizontal_mask", mask, persistent=False)

        self.cond_vertical = (ConditionBias(cond_features, 2 * p, spatial)
                              if cond_features and vertical_output else None)
        self.cond_horizontal = ConditionBias(cond_features, 2 * p, spatial) if cond_features else None

    def condition_biases(self, cond_input: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """Per-layer biases from what the condition feeds the layers: (vertical, horizontal), or (None, None)."""
        if cond_input is None or self.cond_horizontal is None:
            return None, None
        vertical = self.cond_vertical(cond_input) if self.cond_vertical is not None else None
        return vertical, self.cond_horizontal(cond_input)

    def forward(self, vertical: Tensor, horizontal: Tensor,
                biases: tuple[Tensor | None, Tensor | None] = (None, None)) -> tuple[Tensor, Tensor]:
        bias_v, bias_h = biases
        s = self.pad
        v_pre = self.vertical(F.pad(vertical, (s, s, s, 0)))  # (B, 2p, H, W), row i sees rows <= i
        h_pre = F.conv2d(F.pad(horizontal, (s, 0, 0, 0)), self.horizontal.weight * self.horizontal_mask,
                         self.horizontal.bias)
        h_pre = h_pre + self.vertical_to_horizontal(shift_down(v_pre))
        if bias_h is not None:
            h_pre = h_pre + bias_h
        v_out = None
        if self.vertical_output:
            v_out = gate(v_pre + bias_v if bias_v is not None else v_pre)
        h_out = self.horizontal_out(gate(h_pre))
        if self.residual:
            h_out = h_out + horizontal
        return v_out, h_out

    # ----------------------------------------------------------------------------------------
    # Incremental evaluation, used by the cached sampler. Each computes exactly what `forward`
    # computes, at one row (vertical) or one pixel (horizontal), from cached layer inputs.

    def vertical_row(self, v_window: Tensor, bias_v: Tensor | None) -> tuple[Tensor, Tensor]:
        """One row of the vertical stack.

        v_window: (B, in, k//2+1, W + 2*(k//2)), the padded input rows up to and including row r.
        bias_v: (B, 2p, 1, 1 or W) condition bias at row r, or None.
        Returns v_out (B, p, 1, W) at row r (None for the last layer) and the link (B, 2p, 1, W)
        that row r+1 of the horizontal stack receives from it.
        """
        v_pre = self.vertical(v_window)
        link = self.vertical_to_horizontal(v_pre)
        if not self.vertical_output:
            return None, link
        return gate(v_pre + bias_v if bias_v is not None else v_pre), link

    def flat_horizontal_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """Masked horizontal weights as matrices for `horizontal_pixel`.

        Returns W_h (kw * in, 2p) for a window flattened pixel-major, (kw, in) with kw = k//2+1,
        then W_out (p, p) and b_out (p,).
        """
        w_h = (self.horizontal.weight * self.horizontal_mask)[:, :, 0, :]  # (2p, in, kw)
        w_h = w_h.permute(0, 2, 1).flatten(1).t().contiguous()
        w_out = self.horizontal_out.masked_weight().flatten(1).t().contiguous()
        return w_h, w_out, self.horizontal_out.bias

    def horizontal_row_bias(self, link: Tensor, bias_h: Tensor | None) -> Tensor:
        """Everything the horizontal pre-activation adds at each pixel of a row but the convolution.

        link: (B, 2p, 1, W) from `vertical_row` of the row above; bias_h: (B, 2p, 1, 1 or W) or None.
        Returns (W, B, 2p): the link, the horizontal convolution's bias and the condition bias.
        """
        bias = link + self.horizontal.bias[:, None, None]
        if bias_h is not None:
            bias = bias + bias_h
        return bias[:, :, 0, :].permute(2, 0, 1).contiguous()

    def horizontal_pixel(self, window: Tensor, row_bias: Tensor, residual_in: Tensor | None,
                         flat: tuple[Tensor, Tensor, Tensor], out: Tensor | None = None) -> Tensor:
        """The horizontal stack at one pixel.

        window: (B, kw * in), this layer's inputs at the k//2 pixels to the left and the pixel itself.
        row_bias: (B, 2p), this pixel's entry of `horizontal_row_bias`.
        residual_in: (B, in), this layer's input at the pixel (used after the first layer).
        out: optional (B, p) tensor (e.g. a view into the next layer's input buffer) to write to.
        Returns (B, p), this layer's output at the pixel.
        """
        w_h, w_out, b_out = flat
        gated = gate_(torch.addmm(row_bias, window, w_h))
        out = torch.addmm(b_out, gated, w_out, out=out) if out is not None else torch.addmm(b_out, gated, w_out)
        return out.add_(residual_in) if self.residual else out


class MaskedConv2d(nn.Conv2d):
    """The original PixelCNN's k x k convolution with a mostly-zero mask (PixelRNN paper, Figure 2).

    It sees the rows above and the pixels to the left; at the centre, colour group c sees input
    groups < c (mask A) or <= c (mask B). Stacking these leaves the well-known blind spot.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, image_channels: int,
                 mask_type: str) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        c = kernel_size // 2
        mask = torch.zeros(out_channels, in_channels, kernel_size, kernel_size)
        mask[:, :, :c, :] = 1  # rows above
        mask[:, :, c, :c] = 1  # left in the same row
        mask[:, :, c, c] = colour_mask(channel_groups(out_channels, image_channels),
                                       channel_groups(in_channels, image_channels), mask_type)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class OutputHead(nn.Module):
    """ReLU, 1x1, ReLU, 1x1 to a 256-way (or `levels`-way) softmax per sub-pixel.

    (B, p, H, W) -> logits (B, levels, C, H, W). Logits of channel c read hidden groups <= c.
    """

    def __init__(self, hidden_channels: int, head_channels: int, image_channels: int, levels: int) -> None:
        super().__init__()
        self.levels, self.image_channels = levels, image_channels
        self.hidden = ColourMaskedConv1x1(hidden_channels, head_channels, image_channels)
        self.logits = ColourMaskedConv1x1(head_channels, image_channels * levels, image_channels)

    def forward(self, horizontal: Tensor) -> Tensor:
        out = self.logits(F.relu(self.hidden(F.relu(horizontal))))  # (B, C * levels, H, W)
        b, _, height, width = out.shape
        return out.view(b, self.image_channels, self.levels, height, width).transpose(1, 2)

    def flat_weights(self) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Per channel c: (W1 (p, head), b1, W2_c (head, levels), b2_c) for `pixel`.

        Only channel c's columns of the last layer are kept, so a colour sub-step computes the
        logits it samples from and no others.
        """
        w1, b1 = self.hidden.masked_weight().flatten(1).t().contiguous(), self.hidden.bias
        w2, b2 = self.logits.masked_weight().flatten(1).t(), self.logits.bias
        n = self.levels
        return [(w1, b1, w2[:, c * n:(c + 1) * n].contiguous(), b2[c * n:(c + 1) * n])
                for c in range(self.image_channels)]

    def pixel(self, horizontal: Tensor, flat: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
        """The head at one pixel for one channel: (B, p) -> logits (B, levels)."""
        w1, b1, w2, b2 = flat
        return torch.addmm(b2, F.relu(torch.addmm(b1, F.relu(horizontal), w1)), w2)
