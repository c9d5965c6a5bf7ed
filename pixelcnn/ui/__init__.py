"""The Gradio app, one module per tab: `class_picker`, `blind_spot`, `likelihood`, `portraits`, `morph`
and `autoencoder`. Each exports one `common.Tab` as `TAB`: its title, its layout, its wiring and what
a model change does to it; its handlers are module-level functions, callable without a browser.
`app.build` puts the tabs of `app.TABS` on one page. The shared controls (count, temperature,
guidance, seed, Run, Stop), their checks and streaming frames live in `common`; `models.Explorer`
holds the models."""

from .app import build, launch
from .models import Explorer

__all__ = ["build", "launch", "Explorer"]
