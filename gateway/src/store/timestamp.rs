//! One timestamp type for both databases, so their SQL binds and reads times the same way.
//!
//! SQLite keeps times as INTEGER milliseconds since the epoch, PostgreSQL as TIMESTAMPTZ.
//! `At` encodes itself as each expects, so a backend writes `.bind(At(now))` and reads
//! `row.time("created_at")?` whichever database it is; neither column changes.

use chrono::{DateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{ColumnIndex, Decode, Encode, Postgres, Row, Sqlite, Type};

/// A point in time as a column holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct At(pub DateTime<Utc>);

impl Type<Sqlite> for At {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for At {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<SqliteArgumentValue<'q>>,
    ) -> Result<sqlx::encode::IsNull, BoxDynError> {
        <i64 as Encode<'q, Sqlite>>::encode(self.0.timestamp_millis(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for At {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let millis = <i64 as Decode<'r, Sqlite>>::decode(value)?;
        DateTime::from_timestamp_millis(millis)
            .map(At)
            .ok_or_else(|| format!("{millis} is not a time").into())
    }
}

impl Type<Postgres> for At {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for At {
    fn array_type_info() -> PgTypeInfo {
        <DateTime<Utc> as PgHasArrayType>::array_type_info()
    }
}

impl Encode<'_, Postgres> for At {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<'_, Postgres>>::encode_by_ref(&self.0, buf)
    }

    fn size_hint(&self) -> usize {
        <DateTime<Utc> as Encode<'_, Postgres>>::size_hint(&self.0)
    }
}

impl<'r> Decode<'r, Postgres> for At {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<'r, Postgres>>::decode(value).map(At)
    }
}

/// Reading a time column of a row, whichever database it came from.
pub(crate) trait TimeColumn {
    /// The time in `column`.
    fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error>;
    /// The time in `column`, if it is not NULL.
    fn time_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
}

impl<R> TimeColumn for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> At: Decode<'r, R::Database> + Type<R::Database>,
{
    fn time(&self, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        Ok(self.try_get::<At, _>(column)?.0)
    }

    fn time_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        Ok(self.try_get::<Option<At>, _>(column)?.map(|at| at.0))
    }
}
