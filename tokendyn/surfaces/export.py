"""Saving analysis results: netCDF (all of it) or CSV (the per-frame tables)."""
from __future__ import annotations

import os

import numpy as np
import xarray as xr

from tokendyn import format as fmt
from tokendyn.errors import AnalysisError


def _netcdf_ready(ds: xr.Dataset) -> xr.Dataset:
    """netCDF has no bool and no dict attributes: store bools as int8 and attributes as text."""
    ds = ds.copy()
    for name in list(ds.variables):
        var = ds[name]
        if var.dtype == bool:
            ds[name] = var.astype(np.int8).assign_attrs(var.attrs, flag_values="0 1", flag_meanings="false true")
        for key, value in list(ds[name].attrs.items()):
            if not isinstance(value, (str, int, float, np.number, np.ndarray)):
                ds[name].attrs[key] = str(value)
    for key, value in list(ds.attrs.items()):
        if isinstance(value, bool):
            ds.attrs[key] = int(value)
        elif not isinstance(value, (str, int, float, np.number, np.ndarray)):
            ds.attrs[key] = str(value)
    return ds


def per_frame_table(ds: xr.Dataset):
    """The variables along ``frame`` (and optionally ``class``) as one pandas table, one row per frame."""
    import pandas as pd

    columns: dict[str, np.ndarray] = {}
    if "step" in ds.coords:
        columns["step"] = ds["step"].values
    for name, var in ds.data_vars.items():
        if var.dims == (fmt.DIM_FRAME,):
            columns[name] = var.values
        elif len(var.dims) == 2 and var.dims[0] == fmt.DIM_FRAME:
            other = var.dims[1]
            if var.sizes[other] > 32:  # per token: not a table a person reads
                continue
            for label in var[other].values:
                columns[f"{name}[{label}]"] = var.sel({other: label}).values
    if len(columns) <= 1:
        raise AnalysisError("this result has no per-frame variables to write as CSV; use .nc")
    return pd.DataFrame(columns, index=pd.Index(ds[fmt.DIM_FRAME].values, name=fmt.DIM_FRAME))


def save_result(ds: xr.Dataset, path: str | os.PathLike) -> str:
    """Write ``ds`` to ``.nc`` (netCDF4 via h5netcdf) or ``.csv`` (its per-frame table)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".nc":
        _netcdf_ready(ds).to_netcdf(path, engine="h5netcdf")
    elif ext == ".csv":
        per_frame_table(ds).to_csv(path)
    else:
        raise AnalysisError(f"{path}: unknown output type {ext or '(none)'}; use .nc or .csv")
    return path
