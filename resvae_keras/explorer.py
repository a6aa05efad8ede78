"""The latent explorer of notebook 05: edit a face's code (``latent_space.edit_code``) with
sliders and see the decoded face live (``ipywidgets``), or, headless, a static grid."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from resvae_keras import latent, latent_space
from resvae_keras.data.images import to_uint8
from resvae_keras.plots import DEMO_LABEL, image_grid


def interactive_frontend() -> bool:
    """True when ``ipywidgets`` is installed and a Jupyter server started the kernel (it sets
    ``JPY_SESSION_NAME``); False headless (nbval, nbconvert, plain Python)."""
    has_widgets = importlib.util.find_spec("ipywidgets") is not None
    return bool(os.environ.get("JPY_SESSION_NAME")) and has_widgets


def latent_explorer(
    model,
    base_codes,
    vectors: Mapping[str, np.ndarray],
    units: Sequence[int],
    value_range: tuple[float, float] = (-3.0, 3.0),
    interactive: bool | None = None,
    scale: int = 4,
    *,
    title: str = "Penjelajah laten",
    demo: bool = False,
):
    """Sliders for the strength of each attribute vector in ``vectors``, the offset of each
    latent unit in ``units`` (prior standard deviations) and the base face of ``base_codes``
    (n, d), with the decoded face: an ``ipywidgets.VBox``, or headless (``interactive=None``
    asks ``interactive_frontend()``) a closed Figure of the first face, a row per slider."""
    base_codes = np.atleast_2d(np.asarray(base_codes, dtype=np.float32))
    units = [int(unit) for unit in units]
    if not vectors and not units:
        raise ValueError("give at least one attribute vector or one latent unit to explore")
    if interactive or (interactive is None and interactive_frontend()):
        return _widget(model, base_codes, vectors, units, value_range, scale, title, demo)
    # headless: closed, so that a notebook shows it once, as the cell's value
    values = np.linspace(*value_range, 5)
    codes = [[latent_space.edit_code(base_codes[0], vectors, {name: v}) for v in values]
             for name in vectors]
    codes += [[latent_space.edit_code(base_codes[0], unit_offsets={unit: v}) for v in values]
              for unit in units]
    fig = image_grid(
        latent.decode_grid(model, np.asarray(codes, dtype=np.float32)),
        row_labels=[f"{name} (s)" for name in vectors] + [f"z{unit} (geser)" for unit in units],
        col_labels=[f"{v:+g}" for v in values],
        xlabel="nilai slider (slider lain di 0)",
        title=f"{title} (tampilan statis; slider di JupyterLab)",
        demo=demo,
    )
    plt.close(fig)
    return fig


def _widget(model, base_codes, vectors, units, value_range, scale: int, title: str,
            demo: bool):
    """The live explorer: sliders, a reset button and the face, redrawn on every move."""
    import io

    import ipywidgets as widgets
    from PIL import Image

    look = dict(style={"description_width": "120px"}, layout=widgets.Layout(width="420px"))

    def slider(description):
        return widgets.FloatSlider(value=0.0, min=value_range[0], max=value_range[1], step=0.1,
                                   description=description, continuous_update=True, **look)

    face = widgets.IntSlider(value=0, min=0, max=len(base_codes) - 1, description="wajah dasar",
                             **look)
    strength = {name: slider(f"{name} (s)") for name in vectors}
    offset = {unit: slider(f"z{unit} (geser)") for unit in units}
    reset = widgets.Button(description="reset slider")
    image = widgets.Image(format="png")

    def update(_change=None):
        code = latent_space.edit_code(
            base_codes[face.value], vectors,
            {name: s.value for name, s in strength.items()},
            {unit: s.value for unit, s in offset.items()},
        )
        pixels = to_uint8(latent.sample_images(model, code[None])[0])
        buffer = io.BytesIO()  # the face as a PNG, enlarged ``scale`` times (nearest)
        Image.fromarray(pixels.repeat(scale, axis=0).repeat(scale, axis=1)).save(buffer, "PNG")
        image.value = buffer.getvalue()

    def reset_all(_button=None):
        for control in [*strength.values(), *offset.values()]:
            control.value = 0.0

    for control in [face, *strength.values(), *offset.values()]:
        control.observe(update, names="value")
    reset.on_click(reset_all)
    update()
    heading = widgets.HTML(f"<b>{title}</b>" + (f" {DEMO_LABEL}" if demo else ""))
    controls = widgets.VBox([face, *strength.values(), *offset.values(), reset])
    return widgets.VBox([heading, widgets.HBox([controls, image])])
