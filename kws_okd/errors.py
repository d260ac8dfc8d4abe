"""Errors users see. Each names the file or key at fault."""


class KWSError(Exception):
    """Base class for problems caused by user input (data, config)."""


class AudioError(KWSError):
    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class DataError(KWSError):
    pass


class ConfigError(KWSError):
    pass
