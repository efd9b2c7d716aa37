"""Device models of the live simulator, one module per silo.

Each model keeps the state a real device has (and that commands will change)
and implements :meth:`~citypilot.twin.devices.base.DeviceModel.report`.
"""
