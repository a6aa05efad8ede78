import matplotlib

matplotlib.use("Agg")

import matplotlib.figure  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from resvae_keras import explorer  # noqa: E402


class _UnitModel:
    """Decodes z to an 8x8 image whose colour is sigmoid(z[:3]): a slider visibly moves it."""

    latent_dim = 4

    def decode(self, z):
        colour = 1 / (1 + np.exp(-np.asarray(z, np.float32)[:, :3]))
        return np.broadcast_to(colour[:, None, None, :], (len(z), 8, 8, 3)).copy()


def test_interactive_frontend_needs_a_jupyter_server(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert explorer.interactive_frontend() is False  # nbval, nbconvert and scripts land here
    monkeypatch.setenv("JPY_SESSION_NAME", "05_latent_interpolation.ipynb")
    pytest.importorskip("ipywidgets")
    assert explorer.interactive_frontend() is True


def test_latent_explorer_falls_back_to_a_static_figure(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    vectors = {"Smiling": np.array([1.0, 0, 0, 0], np.float32)}
    fig = explorer.latent_explorer(_UnitModel(), np.zeros((2, 4)), vectors, units=[1, 2])
    assert isinstance(fig, matplotlib.figure.Figure)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["Smiling (s)", "z1 (geser)", "z2 (geser)"]


def test_latent_explorer_widget_redraws_when_a_slider_moves():
    widgets = pytest.importorskip("ipywidgets")
    vectors = {"Smiling": np.array([2.0, 0, 0, 0], np.float32)}
    box = explorer.latent_explorer(_UnitModel(), np.zeros((3, 4)), vectors, units=[1],
                                   interactive=True)
    assert isinstance(box, widgets.VBox)
    controls, image = box.children[1].children
    sliders = {c.description: c for c in controls.children if hasattr(c, "value")}
    assert set(sliders) == {"wajah dasar", "Smiling (s)", "z1 (geser)"}
    before = image.value
    sliders["Smiling (s)"].value = 2.5
    assert image.value != before
    controls.children[-1].click()  # reset
    assert sliders["Smiling (s)"].value == 0.0 and image.value == before
