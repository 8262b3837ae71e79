"""loong-jax: minute-long text-to-video generation with an autoregressive LLM, in JAX/Flax."""

__version__ = "0.1.0"
