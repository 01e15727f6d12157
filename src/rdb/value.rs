//! Logical values: what a key holds, independent of how any Redis version encoded it.
//!
//! A 6.2 ziplist and a 7.0 listpack of the same hash decode to the same `Value`, which is what
//! makes cross-version verification possible. Collections keep the order the encoding had; the
//! canonical digest (in `verify/`) decides where order matters.

/// A decoded Redis value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (integers and LZF-compressed strings decode to their bytes).
    String(Vec<u8>),
    /// A list, in order.
    List(Vec<Vec<u8>>),
    /// A set, in encoding order.
    Set(Vec<Vec<u8>>),
    /// A hash: field, value, and (Redis 7.4+ hash field expiry) the field's absolute expiry in ms.
    Hash(Vec<HashField>),
    /// A sorted set: member and score.
    ZSet(Vec<(Vec<u8>, f64)>),
    /// A stream with its entries, last id and consumer groups.
    Stream(Box<Stream>),
    /// A module value we cannot interpret: the module's name and the raw serialized bytes.
    Module { name: String, raw: Vec<u8> },
}

/// One hash field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashField {
    /// Field name.
    pub field: Vec<u8>,
    /// Field value.
    pub value: Vec<u8>,
    /// Absolute expiry of this field in Unix ms (hash field expiry, RDB 12), if any.
    pub expire_at_ms: Option<i64>,
}

/// A stream ID (`ms-seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

/// One stream entry: its ID and field/value pairs.
pub type StreamEntry = (StreamId, Vec<(Vec<u8>, Vec<u8>)>);

/// A stream's full logical content.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stream {
    /// Live entries, in ID order: id and field/value pairs.
    pub entries: Vec<StreamEntry>,
    /// The stream's last generated ID.
    pub last_id: StreamId,
    /// Consumer groups.
    pub groups: Vec<StreamGroup>,
}

/// A stream consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamGroup {
    /// Group name.
    pub name: Vec<u8>,
    /// Last delivered ID.
    pub last_delivered: StreamId,
    /// Pending entries: id, owning consumer, delivery count.
    pub pending: Vec<(StreamId, Vec<u8>, u64)>,
    /// Consumer names.
    pub consumers: Vec<Vec<u8>>,
}

impl Value {
    /// The Redis type name, as `TYPE` prints it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Hash(_) => "hash",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
            Value::Module { .. } => "module",
        }
    }
}
