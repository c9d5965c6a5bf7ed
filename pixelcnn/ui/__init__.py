"""The Gradio app, one module per tab: `class_picker`, `blind_spot`, `likelihood`, and `faces` (the
portrait and interpolation tabs, which share the face reading). Each owns its
layout (`layout`), its handlers (module-level functions, callable without a browser) and its wiring
(`wire`), and says how it changes when the model does (`model_changed`). `app.build` puts them on
one page; a new tab is a new module with the same four parts, added there."""

from .app import build, launch
from .models import Explorer

__all__ = ["build", "launch", "Explorer"]
