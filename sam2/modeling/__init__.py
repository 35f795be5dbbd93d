"""SAM 2 model modules. Parameter names follow the official checkpoint keys."""
