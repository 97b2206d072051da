import subprocess
import sys


def test_core_imports_without_qt_or_napari():
    code = (
        "import sys, napari_unet\n"
        "from napari_unet import segment, train, separation_border_weight_map, load_model, predict_tiled\n"
        "import napari_unet.cli.commands, napari_unet.inference.segment, napari_unet.training.loop, napari_unet._writer\n"
        "import napari_unet.distributed, napari_unet.inference.to_zarr, napari_unet.cli.cluster\n"
        "bad = [m for m in sys.modules if m == 'napari' or m.startswith(('napari.', 'PyQt', 'PySide', 'qtpy', 'magicgui'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plain_import_is_light():
    code = "import sys, napari_unet; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_test_oracles_are_not_public_api():
    import napari_unet
    from napari_unet.testing import predict_whole, weight_map_reference

    assert callable(predict_whole) and callable(weight_map_reference)
    assert "predict_whole" not in napari_unet.__all__
    assert "weight_map_reference" not in napari_unet.__all__
    assert not hasattr(napari_unet, "predict_whole")
