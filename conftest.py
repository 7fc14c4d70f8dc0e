pytest_plugins = ["orderflow.testing.fixtures"]
