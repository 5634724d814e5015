"""Make the model-building fixtures available here until the root conftest registers them."""

from tests.fixtures_models import *  # noqa: F401,F403
