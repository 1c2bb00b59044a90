//! Host arrays: an n-dimensional, dynamically typed array on the CPU, backed by `ndarray`.
//!
//! This is what .npy files decode to, what users hand to [`crate::convert_to_tensor`], and
//! the storage of the reference (ndarray) engine.

use crate::dtype::DType;
use crate::element::{Element, Scalar, C128, C64};
use crate::error::{KilnError, Result};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

/// A host array of any of the fifteen dtypes.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    /// bool
    Bool(ArrayD<bool>),
    /// int8
    I8(ArrayD<i8>),
    /// int16
    I16(ArrayD<i16>),
    /// int32
    I32(ArrayD<i32>),
    /// int64
    I64(ArrayD<i64>),
    /// uint8
    U8(ArrayD<u8>),
    /// uint16
    U16(ArrayD<u16>),
    /// uint32
    U32(ArrayD<u32>),
    /// uint64
    U64(ArrayD<u64>),
    /// bfloat16
    BF16(ArrayD<bf16>),
    /// float16
    F16(ArrayD<f16>),
    /// float32
    F32(ArrayD<f32>),
    /// float64
    F64(ArrayD<f64>),
    /// complex64
    C64(ArrayD<C64>),
    /// complex128
    C128(ArrayD<C128>),
}

/// Runs `$body` with `$a` bound to the typed array inside an [`ArrayData`], and `$T` to its
/// element type. The one place that lists the fifteen variants for generic code.
#[macro_export]
#[doc(hidden)]
macro_rules! with_array {
    ($data:expr, $a:ident, $T:ident => $body:expr) => {
        match $data {
            $crate::array::ArrayData::Bool($a) => {
                type $T = bool;
                $body
            }
            $crate::array::ArrayData::I8($a) => {
                type $T = i8;
                $body
            }
            $crate::array::ArrayData::I16($a) => {
                type $T = i16;
                $body
            }
            $crate::array::ArrayData::I32($a) => {
                type $T = i32;
                $body
            }
            $crate::array::ArrayData::I64($a) => {
                type $T = i64;
                $body
            }
            $crate::array::ArrayData::U8($a) => {
                type $T = u8;
                $body
            }
            $crate::array::ArrayData::U16($a) => {
                type $T = u16;
                $body
            }
            $crate::array::ArrayData::U32($a) => {
                type $T = u32;
                $body
            }
            $crate::array::ArrayData::U64($a) => {
                type $T = u64;
                $body
            }
            $crate::array::ArrayData::BF16($a) => {
                type $T = half::bf16;
                $body
            }
            $crate::array::ArrayData::F16($a) => {
                type $T = half::f16;
                $body
            }
            $crate::array::ArrayData::F32($a) => {
                type $T = f32;
                $body
            }
            $crate::array::ArrayData::F64($a) => {
                type $T = f64;
                $body
            }
            $crate::array::ArrayData::C64($a) => {
                type $T = $crate::element::C64;
                $body
            }
            $crate::array::ArrayData::C128($a) => {
                type $T = $crate::element::C128;
                $body
            }
        }
    };
}

/// Runs `$body` with `$T` bound to the element type of a [`DType`].
#[macro_export]
#[doc(hidden)]
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::Bool => {
                type $T = bool;
                $body
            }
            $crate::DType::Int8 => {
                type $T = i8;
                $body
            }
            $crate::DType::Int16 => {
                type $T = i16;
                $body
            }
            $crate::DType::Int32 => {
                type $T = i32;
                $body
            }
            $crate::DType::Int64 => {
                type $T = i64;
                $body
            }
            $crate::DType::UInt8 => {
                type $T = u8;
                $body
            }
            $crate::DType::UInt16 => {
                type $T = u16;
                $body
            }
            $crate::DType::UInt32 => {
                type $T = u32;
                $body
            }
            $crate::DType::UInt64 => {
                type $T = u64;
                $body
            }
            $crate::DType::BFloat16 => {
                type $T = half::bf16;
                $body
            }
            $crate::DType::Float16 => {
                type $T = half::f16;
                $body
            }
            $crate::DType::Float32 => {
                type $T = f32;
                $body
            }
            $crate::DType::Float64 => {
                type $T = f64;
                $body
            }
            $crate::DType::Complex64 => {
                type $T = $crate::element::C64;
                $body
            }
            $crate::DType::Complex128 => {
                type $T = $crate::element::C128;
                $body
            }
        }
    };
}

/// Typed access to [`ArrayData`]: implemented for the fifteen element types.
pub trait HostElement: Element {
    /// Wraps a typed array.
    fn wrap(a: ArrayD<Self>) -> ArrayData;
    /// Borrows the typed array if the dtype matches.
    fn view(d: &ArrayData) -> Option<&ArrayD<Self>>;
    /// Takes the typed array if the dtype matches.
    fn take(d: ArrayData) -> std::result::Result<ArrayD<Self>, ArrayData>;
}

macro_rules! host_element {
    ($($t:ty => $v:ident),*) => {$(
        impl HostElement for $t {
            #[inline] fn wrap(a: ArrayD<Self>) -> ArrayData { ArrayData::$v(a) }
            #[inline] fn view(d: &ArrayData) -> Option<&ArrayD<Self>> {
                if let ArrayData::$v(a) = d { Some(a) } else { None }
            }
            #[inline] fn take(d: ArrayData) -> std::result::Result<ArrayD<Self>, ArrayData> {
                if let ArrayData::$v(a) = d { Ok(a) } else { Err(d) }
            }
        }
        impl From<ArrayD<$t>> for ArrayData {
            fn from(a: ArrayD<$t>) -> ArrayData { ArrayData::$v(a) }
        }
        impl From<Vec<$t>> for ArrayData {
            fn from(v: Vec<$t>) -> ArrayData { let n = v.len(); ArrayData::$v(ArrayD::from_shape_vec(IxDyn(&[n]), v).expect("1-d shape always fits")) }
        }
        impl From<&[$t]> for ArrayData {
            fn from(v: &[$t]) -> ArrayData { ArrayData::from(v.to_vec()) }
        }
    )*};
}
host_element!(bool => Bool, i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16,
    u32 => U32, u64 => U64, bf16 => BF16, f16 => F16, f32 => F32, f64 => F64, C64 => C64, C128 => C128);

impl ArrayData {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        with_array!(self, _a, T => <T as Element>::DTYPE)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        with_array!(self, a, _T => a.shape())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_array!(self, a, _T => a.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds an array from a flat vector in C (row-major) order and a shape.
    ///
    /// ```
    /// use kiln::ArrayData;
    /// let a = ArrayData::from_shape_vec(&[2, 3], vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    /// assert_eq!(a.shape(), &[2, 3]);
    /// assert_eq!(a.dtype(), kiln::DType::Float64);
    /// ```
    pub fn from_shape_vec<T: HostElement>(shape: &[usize], v: Vec<T>) -> Result<ArrayData> {
        let n: usize = checked_numel(shape, "ArrayData::from_shape_vec")?;
        if n != v.len() {
            return Err(KilnError::shape(
                "ArrayData::from_shape_vec",
                shape,
                &[v.len()],
                format!("shape holds {n} elements but {} were given", v.len()),
            ));
        }
        Ok(T::wrap(ArrayD::from_shape_vec(IxDyn(shape), v).map_err(
            |e| KilnError::invalid("ArrayData::from_shape_vec", e.to_string()),
        )?))
    }

    /// A 0-d array holding one scalar of the given dtype (NumPy unsafe-cast semantics).
    pub fn scalar(value: Scalar, dtype: DType) -> ArrayData {
        with_dtype!(dtype, T => T::wrap(ArrayD::from_elem(IxDyn(&[]), T::from_scalar(value))))
    }

    /// An array of `shape` filled with `value` cast to `dtype` (NumPy unsafe-cast
    /// semantics); an error if the shape's element count overflows.
    pub fn full(shape: &[usize], value: Scalar, dtype: DType) -> Result<ArrayData> {
        let n = checked_numel(shape, "ArrayData::full")?;
        Ok(with_dtype!(dtype, T => {
            let v = T::from_scalar(value);
            // A zero value (all-zero bits in every dtype) maps lazily zeroed pages.
            let zero = matches!(value, Scalar::Int(0) | Scalar::UInt(0) | Scalar::Bool(false))
                || matches!(value, Scalar::Float(f) if f.to_bits() == 0);
            let buf = if zero {
                crate::hostmem::zeroed_for::<T>(n, "full", shape)?
            } else {
                crate::hostmem::par_fill(n, 1 << 16, 64, "full", shape, |_, o| {
                    for s in o {
                        s.write(v);
                    }
                })?
            };
            T::wrap(ArrayD::from_shape_vec(IxDyn(shape), buf).map_err(|e| KilnError::invalid("ArrayData::full", e.to_string()))?)
        }))
    }

    /// Typed borrow; an error naming both dtypes if `T` is not this array's element type.
    pub fn as_array<T: HostElement>(&self) -> Result<&ArrayD<T>> {
        T::view(self).ok_or_else(|| {
            KilnError::invalid(
                "ArrayData::as_array",
                format!(
                    "array holds {} but {} was asked for; cast first",
                    self.dtype(),
                    T::DTYPE
                ),
            )
        })
    }

    /// The elements in C order, as `T` (which must be this array's element type).
    pub fn to_vec<T: HostElement>(&self) -> Result<Vec<T>> {
        Ok(self.as_array::<T>()?.iter().copied().collect())
    }

    /// The elements in C order as dynamically typed scalars (for printing and tests).
    pub fn to_scalars(&self) -> Vec<Scalar> {
        with_array!(self, a, _T => a.iter().map(|x| x.to_scalar()).collect())
    }

    /// The elements as f64 (real part of complex; bool as 0/1). For tests and reports.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        with_array!(self, a, _T => a.iter().map(|x| x.to_scalar().as_f64()).collect())
    }
}

/// The number of elements of `shape`, or an error if it overflows `usize`.
pub fn checked_numel(shape: &[usize], op: &str) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            KilnError::invalid(
                op,
                format!("shape {shape:?} has more elements than fit in memory"),
            )
        })
}
