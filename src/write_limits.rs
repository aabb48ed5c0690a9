//! A transport's write-buffer water marks, as asyncio's `_FlowControlMixin`
//! keeps them: `set_write_buffer_limits(high=None, low=None)` takes any
//! numbers (floats too), applies the stock defaults with Python arithmetic,
//! and `get_write_buffer_limits()` returns the very objects it was given.
//! The transports compare their buffer sizes against an `f64` copy.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// asyncio's default high-water mark for a transport's write buffer.
const DEFAULT_HIGH_WATER: i64 = 64 * 1024;
/// ... and its low-water mark, a quarter of it (as `new(None, None)`
/// computes it).
const DEFAULT_LOW_WATER: i64 = DEFAULT_HIGH_WATER / 4;

pub(crate) struct WriteLimits {
    /// The objects `set_write_buffer_limits` was given (after its
    /// arithmetic); None: the defaults, made into ints only when asked for,
    /// so an idle connection holds no int objects for them.
    high: Option<Py<PyAny>>,
    low: Option<Py<PyAny>>,
    /// `high` and `low` as numbers, for the buffer-size checks.
    pub(crate) high_water: f64,
    pub(crate) low_water: f64,
}

impl WriteLimits {
    /// The defaults: 64 KiB and a quarter of it (as `new(None, None)`
    /// computes them, without the Python arithmetic on every connection).
    pub(crate) fn default(_py: Python<'_>) -> Self {
        WriteLimits {
            high: None,
            low: None,
            high_water: DEFAULT_HIGH_WATER as f64,
            low_water: DEFAULT_LOW_WATER as f64,
        }
    }

    /// `_FlowControlMixin._set_write_buffer_limits(high, low)`: the same
    /// defaults, arithmetic and ValueError.
    pub(crate) fn new(
        py: Python<'_>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let high = match (high, &low) {
            (Some(high), _) => high,
            (None, None) => DEFAULT_HIGH_WATER.into_pyobject(py)?.into_any(),
            (None, Some(low)) => low.mul(4)?,
        };
        let low = match low {
            Some(low) => low,
            None => high.floor_div(4)?,
        };
        if !(high.ge(&low)? && low.ge(0)?) {
            return Err(PyValueError::new_err(format!(
                "high ({}) must be >= low ({}) must be >= 0",
                high.repr()?,
                low.repr()?
            )));
        }
        Ok(WriteLimits {
            high_water: high.extract()?,
            low_water: low.extract()?,
            high: Some(high.unbind()),
            low: Some(low.unbind()),
        })
    }

    /// `get_write_buffer_limits()`: (low, high).
    pub(crate) fn as_tuple(&self, py: Python<'_>) -> (Py<PyAny>, Py<PyAny>) {
        let or_int = |obj: &Option<Py<PyAny>>, default: i64| match obj {
            Some(obj) => obj.clone_ref(py),
            None => {
                let Ok(int) = default.into_pyobject(py);
                int.into_any().unbind()
            }
        };
        (
            or_int(&self.low, DEFAULT_LOW_WATER),
            or_int(&self.high, DEFAULT_HIGH_WATER),
        )
    }
}
