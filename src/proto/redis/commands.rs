//! The commands redis-server knows: each one's name, how it is reported, where its first
//! key is, and whether it has subcommands or blocks.
//!
//! Generated from the `COMMAND` reply of redis-server 7.0.15 (Debian 12): for every
//! command and subcommand, its name (subcommands as `CONTAINER|SUB`), its first key's
//! position (0: none or not at a fixed position, as for EVAL's keys after `numkeys`), its
//! subcommands and its `blocking` flag. Pub/sub commands name their channel in the key
//! position (PUBLISH, SUBSCRIBE...: a channel's prefix is as telling as a key's). To
//! refresh it, read `COMMAND` with any RESP client and print one line per entry, sorted.

use std::sync::OnceLock;

/// The command has subcommands (`CLIENT SETNAME`): `op` then includes the second word.
pub const CONTAINER: u8 = 1;
/// The command may block until data arrives (BLPOP, XREAD BLOCK...): no timeout applies.
pub const BLOCKING: u8 = 2;

#[derive(Debug)]
pub struct Command {
    /// As `COMMAND` names it, upper-cased: `GET`, `CLIENT|SETNAME`.
    pub name: &'static str,
    /// `db.operation.name`: `GET`, `CLIENT SETNAME`.
    pub op: &'static str,
    /// Position of the first key among the arguments (the name is 0); 0 when none.
    pub key: u8,
    pub flags: u8,
}

impl Command {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Sorted by name.
pub static COMMANDS: &[Command] = &[
    Command {
        name: "ACL",
        op: "ACL",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "ACL|CAT",
        op: "ACL CAT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|DELUSER",
        op: "ACL DELUSER",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|DRYRUN",
        op: "ACL DRYRUN",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|GENPASS",
        op: "ACL GENPASS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|GETUSER",
        op: "ACL GETUSER",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|HELP",
        op: "ACL HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|LIST",
        op: "ACL LIST",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|LOAD",
        op: "ACL LOAD",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|LOG",
        op: "ACL LOG",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|SAVE",
        op: "ACL SAVE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|SETUSER",
        op: "ACL SETUSER",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|USERS",
        op: "ACL USERS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ACL|WHOAMI",
        op: "ACL WHOAMI",
        key: 0,
        flags: 0,
    },
    Command {
        name: "APPEND",
        op: "APPEND",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ASKING",
        op: "ASKING",
        key: 0,
        flags: 0,
    },
    Command {
        name: "AUTH",
        op: "AUTH",
        key: 0,
        flags: 0,
    },
    Command {
        name: "BGREWRITEAOF",
        op: "BGREWRITEAOF",
        key: 0,
        flags: 0,
    },
    Command {
        name: "BGSAVE",
        op: "BGSAVE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "BITCOUNT",
        op: "BITCOUNT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "BITFIELD",
        op: "BITFIELD",
        key: 1,
        flags: 0,
    },
    Command {
        name: "BITFIELD_RO",
        op: "BITFIELD_RO",
        key: 1,
        flags: 0,
    },
    Command {
        name: "BITOP",
        op: "BITOP",
        key: 2,
        flags: 0,
    },
    Command {
        name: "BITPOS",
        op: "BITPOS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "BLMOVE",
        op: "BLMOVE",
        key: 1,
        flags: BLOCKING,
    },
    Command {
        name: "BLMPOP",
        op: "BLMPOP",
        key: 0,
        flags: BLOCKING,
    },
    Command {
        name: "BLPOP",
        op: "BLPOP",
        key: 1,
        flags: BLOCKING,
    },
    Command {
        name: "BRPOP",
        op: "BRPOP",
        key: 1,
        flags: BLOCKING,
    },
    Command {
        name: "BRPOPLPUSH",
        op: "BRPOPLPUSH",
        key: 1,
        flags: BLOCKING,
    },
    Command {
        name: "BZMPOP",
        op: "BZMPOP",
        key: 0,
        flags: BLOCKING,
    },
    Command {
        name: "BZPOPMAX",
        op: "BZPOPMAX",
        key: 1,
        flags: BLOCKING,
    },
    Command {
        name: "BZPOPMIN",
        op: "BZPOPMIN",
        key: 1,
        flags: BLOCKING,
    },
    Command {
        name: "CLIENT",
        op: "CLIENT",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "CLIENT|CACHING",
        op: "CLIENT CACHING",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|GETNAME",
        op: "CLIENT GETNAME",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|GETREDIR",
        op: "CLIENT GETREDIR",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|HELP",
        op: "CLIENT HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|ID",
        op: "CLIENT ID",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|INFO",
        op: "CLIENT INFO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|KILL",
        op: "CLIENT KILL",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|LIST",
        op: "CLIENT LIST",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|NO-EVICT",
        op: "CLIENT NO-EVICT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|PAUSE",
        op: "CLIENT PAUSE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|REPLY",
        op: "CLIENT REPLY",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|SETNAME",
        op: "CLIENT SETNAME",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|TRACKING",
        op: "CLIENT TRACKING",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|TRACKINGINFO",
        op: "CLIENT TRACKINGINFO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|UNBLOCK",
        op: "CLIENT UNBLOCK",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLIENT|UNPAUSE",
        op: "CLIENT UNPAUSE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER",
        op: "CLUSTER",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "CLUSTER|ADDSLOTS",
        op: "CLUSTER ADDSLOTS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|ADDSLOTSRANGE",
        op: "CLUSTER ADDSLOTSRANGE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|BUMPEPOCH",
        op: "CLUSTER BUMPEPOCH",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|COUNT-FAILURE-REPORTS",
        op: "CLUSTER COUNT-FAILURE-REPORTS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|COUNTKEYSINSLOT",
        op: "CLUSTER COUNTKEYSINSLOT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|DELSLOTS",
        op: "CLUSTER DELSLOTS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|DELSLOTSRANGE",
        op: "CLUSTER DELSLOTSRANGE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|FAILOVER",
        op: "CLUSTER FAILOVER",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|FLUSHSLOTS",
        op: "CLUSTER FLUSHSLOTS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|FORGET",
        op: "CLUSTER FORGET",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|GETKEYSINSLOT",
        op: "CLUSTER GETKEYSINSLOT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|HELP",
        op: "CLUSTER HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|INFO",
        op: "CLUSTER INFO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|KEYSLOT",
        op: "CLUSTER KEYSLOT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|LINKS",
        op: "CLUSTER LINKS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|MEET",
        op: "CLUSTER MEET",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|MYID",
        op: "CLUSTER MYID",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|NODES",
        op: "CLUSTER NODES",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|REPLICAS",
        op: "CLUSTER REPLICAS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|REPLICATE",
        op: "CLUSTER REPLICATE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|RESET",
        op: "CLUSTER RESET",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|SAVECONFIG",
        op: "CLUSTER SAVECONFIG",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|SET-CONFIG-EPOCH",
        op: "CLUSTER SET-CONFIG-EPOCH",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|SETSLOT",
        op: "CLUSTER SETSLOT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|SHARDS",
        op: "CLUSTER SHARDS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|SLAVES",
        op: "CLUSTER SLAVES",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CLUSTER|SLOTS",
        op: "CLUSTER SLOTS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "COMMAND",
        op: "COMMAND",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "COMMAND|COUNT",
        op: "COMMAND COUNT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "COMMAND|DOCS",
        op: "COMMAND DOCS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "COMMAND|GETKEYS",
        op: "COMMAND GETKEYS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "COMMAND|GETKEYSANDFLAGS",
        op: "COMMAND GETKEYSANDFLAGS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "COMMAND|HELP",
        op: "COMMAND HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "COMMAND|INFO",
        op: "COMMAND INFO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "COMMAND|LIST",
        op: "COMMAND LIST",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CONFIG",
        op: "CONFIG",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "CONFIG|GET",
        op: "CONFIG GET",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CONFIG|HELP",
        op: "CONFIG HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CONFIG|RESETSTAT",
        op: "CONFIG RESETSTAT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CONFIG|REWRITE",
        op: "CONFIG REWRITE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "CONFIG|SET",
        op: "CONFIG SET",
        key: 0,
        flags: 0,
    },
    Command {
        name: "COPY",
        op: "COPY",
        key: 1,
        flags: 0,
    },
    Command {
        name: "DBSIZE",
        op: "DBSIZE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "DEBUG",
        op: "DEBUG",
        key: 0,
        flags: 0,
    },
    Command {
        name: "DECR",
        op: "DECR",
        key: 1,
        flags: 0,
    },
    Command {
        name: "DECRBY",
        op: "DECRBY",
        key: 1,
        flags: 0,
    },
    Command {
        name: "DEL",
        op: "DEL",
        key: 1,
        flags: 0,
    },
    Command {
        name: "DISCARD",
        op: "DISCARD",
        key: 0,
        flags: 0,
    },
    Command {
        name: "DUMP",
        op: "DUMP",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ECHO",
        op: "ECHO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "EVAL",
        op: "EVAL",
        key: 0,
        flags: 0,
    },
    Command {
        name: "EVALSHA",
        op: "EVALSHA",
        key: 0,
        flags: 0,
    },
    Command {
        name: "EVALSHA_RO",
        op: "EVALSHA_RO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "EVAL_RO",
        op: "EVAL_RO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "EXEC",
        op: "EXEC",
        key: 0,
        flags: 0,
    },
    Command {
        name: "EXISTS",
        op: "EXISTS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "EXPIRE",
        op: "EXPIRE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "EXPIREAT",
        op: "EXPIREAT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "EXPIRETIME",
        op: "EXPIRETIME",
        key: 1,
        flags: 0,
    },
    Command {
        name: "FAILOVER",
        op: "FAILOVER",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FCALL",
        op: "FCALL",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FCALL_RO",
        op: "FCALL_RO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FLUSHALL",
        op: "FLUSHALL",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FLUSHDB",
        op: "FLUSHDB",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FUNCTION",
        op: "FUNCTION",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "FUNCTION|DELETE",
        op: "FUNCTION DELETE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FUNCTION|DUMP",
        op: "FUNCTION DUMP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FUNCTION|FLUSH",
        op: "FUNCTION FLUSH",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FUNCTION|HELP",
        op: "FUNCTION HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FUNCTION|KILL",
        op: "FUNCTION KILL",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FUNCTION|LIST",
        op: "FUNCTION LIST",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FUNCTION|LOAD",
        op: "FUNCTION LOAD",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FUNCTION|RESTORE",
        op: "FUNCTION RESTORE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "FUNCTION|STATS",
        op: "FUNCTION STATS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "GEOADD",
        op: "GEOADD",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GEODIST",
        op: "GEODIST",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GEOHASH",
        op: "GEOHASH",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GEOPOS",
        op: "GEOPOS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GEORADIUS",
        op: "GEORADIUS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GEORADIUSBYMEMBER",
        op: "GEORADIUSBYMEMBER",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GEORADIUSBYMEMBER_RO",
        op: "GEORADIUSBYMEMBER_RO",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GEORADIUS_RO",
        op: "GEORADIUS_RO",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GEOSEARCH",
        op: "GEOSEARCH",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GEOSEARCHSTORE",
        op: "GEOSEARCHSTORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GET",
        op: "GET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GETBIT",
        op: "GETBIT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GETDEL",
        op: "GETDEL",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GETEX",
        op: "GETEX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GETRANGE",
        op: "GETRANGE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "GETSET",
        op: "GETSET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HDEL",
        op: "HDEL",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HELLO",
        op: "HELLO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "HEXISTS",
        op: "HEXISTS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HGET",
        op: "HGET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HGETALL",
        op: "HGETALL",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HINCRBY",
        op: "HINCRBY",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HINCRBYFLOAT",
        op: "HINCRBYFLOAT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HKEYS",
        op: "HKEYS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HLEN",
        op: "HLEN",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HMGET",
        op: "HMGET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HMSET",
        op: "HMSET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HRANDFIELD",
        op: "HRANDFIELD",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HSCAN",
        op: "HSCAN",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HSET",
        op: "HSET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HSETNX",
        op: "HSETNX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HSTRLEN",
        op: "HSTRLEN",
        key: 1,
        flags: 0,
    },
    Command {
        name: "HVALS",
        op: "HVALS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "INCR",
        op: "INCR",
        key: 1,
        flags: 0,
    },
    Command {
        name: "INCRBY",
        op: "INCRBY",
        key: 1,
        flags: 0,
    },
    Command {
        name: "INCRBYFLOAT",
        op: "INCRBYFLOAT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "INFO",
        op: "INFO",
        key: 0,
        flags: 0,
    },
    Command {
        name: "KEYS",
        op: "KEYS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LASTSAVE",
        op: "LASTSAVE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LATENCY",
        op: "LATENCY",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "LATENCY|DOCTOR",
        op: "LATENCY DOCTOR",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LATENCY|GRAPH",
        op: "LATENCY GRAPH",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LATENCY|HELP",
        op: "LATENCY HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LATENCY|HISTOGRAM",
        op: "LATENCY HISTOGRAM",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LATENCY|HISTORY",
        op: "LATENCY HISTORY",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LATENCY|LATEST",
        op: "LATENCY LATEST",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LATENCY|RESET",
        op: "LATENCY RESET",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LCS",
        op: "LCS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LINDEX",
        op: "LINDEX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LINSERT",
        op: "LINSERT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LLEN",
        op: "LLEN",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LMOVE",
        op: "LMOVE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LMPOP",
        op: "LMPOP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LOLWUT",
        op: "LOLWUT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "LPOP",
        op: "LPOP",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LPOS",
        op: "LPOS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LPUSH",
        op: "LPUSH",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LPUSHX",
        op: "LPUSHX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LRANGE",
        op: "LRANGE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LREM",
        op: "LREM",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LSET",
        op: "LSET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "LTRIM",
        op: "LTRIM",
        key: 1,
        flags: 0,
    },
    Command {
        name: "MEMORY",
        op: "MEMORY",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "MEMORY|DOCTOR",
        op: "MEMORY DOCTOR",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MEMORY|HELP",
        op: "MEMORY HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MEMORY|MALLOC-STATS",
        op: "MEMORY MALLOC-STATS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MEMORY|PURGE",
        op: "MEMORY PURGE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MEMORY|STATS",
        op: "MEMORY STATS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MEMORY|USAGE",
        op: "MEMORY USAGE",
        key: 2,
        flags: 0,
    },
    Command {
        name: "MGET",
        op: "MGET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "MIGRATE",
        op: "MIGRATE",
        key: 3,
        flags: 0,
    },
    Command {
        name: "MODULE",
        op: "MODULE",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "MODULE|HELP",
        op: "MODULE HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MODULE|LIST",
        op: "MODULE LIST",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MODULE|LOAD",
        op: "MODULE LOAD",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MODULE|LOADEX",
        op: "MODULE LOADEX",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MODULE|UNLOAD",
        op: "MODULE UNLOAD",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MONITOR",
        op: "MONITOR",
        key: 0,
        flags: 0,
    },
    Command {
        name: "MOVE",
        op: "MOVE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "MSET",
        op: "MSET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "MSETNX",
        op: "MSETNX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "MULTI",
        op: "MULTI",
        key: 0,
        flags: 0,
    },
    Command {
        name: "OBJECT",
        op: "OBJECT",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "OBJECT|ENCODING",
        op: "OBJECT ENCODING",
        key: 2,
        flags: 0,
    },
    Command {
        name: "OBJECT|FREQ",
        op: "OBJECT FREQ",
        key: 2,
        flags: 0,
    },
    Command {
        name: "OBJECT|HELP",
        op: "OBJECT HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "OBJECT|IDLETIME",
        op: "OBJECT IDLETIME",
        key: 2,
        flags: 0,
    },
    Command {
        name: "OBJECT|REFCOUNT",
        op: "OBJECT REFCOUNT",
        key: 2,
        flags: 0,
    },
    Command {
        name: "PERSIST",
        op: "PERSIST",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PEXPIRE",
        op: "PEXPIRE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PEXPIREAT",
        op: "PEXPIREAT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PEXPIRETIME",
        op: "PEXPIRETIME",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PFADD",
        op: "PFADD",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PFCOUNT",
        op: "PFCOUNT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PFDEBUG",
        op: "PFDEBUG",
        key: 2,
        flags: 0,
    },
    Command {
        name: "PFMERGE",
        op: "PFMERGE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PFSELFTEST",
        op: "PFSELFTEST",
        key: 0,
        flags: 0,
    },
    Command {
        name: "PING",
        op: "PING",
        key: 0,
        flags: 0,
    },
    Command {
        name: "PSETEX",
        op: "PSETEX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PSUBSCRIBE",
        op: "PSUBSCRIBE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PSYNC",
        op: "PSYNC",
        key: 0,
        flags: 0,
    },
    Command {
        name: "PTTL",
        op: "PTTL",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PUBLISH",
        op: "PUBLISH",
        key: 1,
        flags: 0,
    },
    Command {
        name: "PUBSUB",
        op: "PUBSUB",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "PUBSUB|CHANNELS",
        op: "PUBSUB CHANNELS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "PUBSUB|HELP",
        op: "PUBSUB HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "PUBSUB|NUMPAT",
        op: "PUBSUB NUMPAT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "PUBSUB|NUMSUB",
        op: "PUBSUB NUMSUB",
        key: 0,
        flags: 0,
    },
    Command {
        name: "PUBSUB|SHARDCHANNELS",
        op: "PUBSUB SHARDCHANNELS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "PUBSUB|SHARDNUMSUB",
        op: "PUBSUB SHARDNUMSUB",
        key: 0,
        flags: 0,
    },
    Command {
        name: "PUNSUBSCRIBE",
        op: "PUNSUBSCRIBE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "QUIT",
        op: "QUIT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "RANDOMKEY",
        op: "RANDOMKEY",
        key: 0,
        flags: 0,
    },
    Command {
        name: "READONLY",
        op: "READONLY",
        key: 0,
        flags: 0,
    },
    Command {
        name: "READWRITE",
        op: "READWRITE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "RENAME",
        op: "RENAME",
        key: 1,
        flags: 0,
    },
    Command {
        name: "RENAMENX",
        op: "RENAMENX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "REPLCONF",
        op: "REPLCONF",
        key: 0,
        flags: 0,
    },
    Command {
        name: "REPLICAOF",
        op: "REPLICAOF",
        key: 0,
        flags: 0,
    },
    Command {
        name: "RESET",
        op: "RESET",
        key: 0,
        flags: 0,
    },
    Command {
        name: "RESTORE",
        op: "RESTORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "RESTORE-ASKING",
        op: "RESTORE-ASKING",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ROLE",
        op: "ROLE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "RPOP",
        op: "RPOP",
        key: 1,
        flags: 0,
    },
    Command {
        name: "RPOPLPUSH",
        op: "RPOPLPUSH",
        key: 1,
        flags: 0,
    },
    Command {
        name: "RPUSH",
        op: "RPUSH",
        key: 1,
        flags: 0,
    },
    Command {
        name: "RPUSHX",
        op: "RPUSHX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SADD",
        op: "SADD",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SAVE",
        op: "SAVE",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SCAN",
        op: "SCAN",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SCARD",
        op: "SCARD",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SCRIPT",
        op: "SCRIPT",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "SCRIPT|DEBUG",
        op: "SCRIPT DEBUG",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SCRIPT|EXISTS",
        op: "SCRIPT EXISTS",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SCRIPT|FLUSH",
        op: "SCRIPT FLUSH",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SCRIPT|HELP",
        op: "SCRIPT HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SCRIPT|KILL",
        op: "SCRIPT KILL",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SCRIPT|LOAD",
        op: "SCRIPT LOAD",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SDIFF",
        op: "SDIFF",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SDIFFSTORE",
        op: "SDIFFSTORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SELECT",
        op: "SELECT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SET",
        op: "SET",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SETBIT",
        op: "SETBIT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SETEX",
        op: "SETEX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SETNX",
        op: "SETNX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SETRANGE",
        op: "SETRANGE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SHUTDOWN",
        op: "SHUTDOWN",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SINTER",
        op: "SINTER",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SINTERCARD",
        op: "SINTERCARD",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SINTERSTORE",
        op: "SINTERSTORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SISMEMBER",
        op: "SISMEMBER",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SLAVEOF",
        op: "SLAVEOF",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SLOWLOG",
        op: "SLOWLOG",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "SLOWLOG|GET",
        op: "SLOWLOG GET",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SLOWLOG|HELP",
        op: "SLOWLOG HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SLOWLOG|LEN",
        op: "SLOWLOG LEN",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SLOWLOG|RESET",
        op: "SLOWLOG RESET",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SMEMBERS",
        op: "SMEMBERS",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SMISMEMBER",
        op: "SMISMEMBER",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SMOVE",
        op: "SMOVE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SORT",
        op: "SORT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SORT_RO",
        op: "SORT_RO",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SPOP",
        op: "SPOP",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SPUBLISH",
        op: "SPUBLISH",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SRANDMEMBER",
        op: "SRANDMEMBER",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SREM",
        op: "SREM",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SSCAN",
        op: "SSCAN",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SSUBSCRIBE",
        op: "SSUBSCRIBE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "STRLEN",
        op: "STRLEN",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SUBSCRIBE",
        op: "SUBSCRIBE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SUBSTR",
        op: "SUBSTR",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SUNION",
        op: "SUNION",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SUNIONSTORE",
        op: "SUNIONSTORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SUNSUBSCRIBE",
        op: "SUNSUBSCRIBE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "SWAPDB",
        op: "SWAPDB",
        key: 0,
        flags: 0,
    },
    Command {
        name: "SYNC",
        op: "SYNC",
        key: 0,
        flags: 0,
    },
    Command {
        name: "TIME",
        op: "TIME",
        key: 0,
        flags: 0,
    },
    Command {
        name: "TOUCH",
        op: "TOUCH",
        key: 1,
        flags: 0,
    },
    Command {
        name: "TTL",
        op: "TTL",
        key: 1,
        flags: 0,
    },
    Command {
        name: "TYPE",
        op: "TYPE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "UNLINK",
        op: "UNLINK",
        key: 1,
        flags: 0,
    },
    Command {
        name: "UNSUBSCRIBE",
        op: "UNSUBSCRIBE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "UNWATCH",
        op: "UNWATCH",
        key: 0,
        flags: 0,
    },
    Command {
        name: "WAIT",
        op: "WAIT",
        key: 0,
        flags: 0,
    },
    Command {
        name: "WATCH",
        op: "WATCH",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XACK",
        op: "XACK",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XADD",
        op: "XADD",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XAUTOCLAIM",
        op: "XAUTOCLAIM",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XCLAIM",
        op: "XCLAIM",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XDEL",
        op: "XDEL",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XGROUP",
        op: "XGROUP",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "XGROUP|CREATE",
        op: "XGROUP CREATE",
        key: 2,
        flags: 0,
    },
    Command {
        name: "XGROUP|CREATECONSUMER",
        op: "XGROUP CREATECONSUMER",
        key: 2,
        flags: 0,
    },
    Command {
        name: "XGROUP|DELCONSUMER",
        op: "XGROUP DELCONSUMER",
        key: 2,
        flags: 0,
    },
    Command {
        name: "XGROUP|DESTROY",
        op: "XGROUP DESTROY",
        key: 2,
        flags: 0,
    },
    Command {
        name: "XGROUP|HELP",
        op: "XGROUP HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "XGROUP|SETID",
        op: "XGROUP SETID",
        key: 2,
        flags: 0,
    },
    Command {
        name: "XINFO",
        op: "XINFO",
        key: 0,
        flags: CONTAINER,
    },
    Command {
        name: "XINFO|CONSUMERS",
        op: "XINFO CONSUMERS",
        key: 2,
        flags: 0,
    },
    Command {
        name: "XINFO|GROUPS",
        op: "XINFO GROUPS",
        key: 2,
        flags: 0,
    },
    Command {
        name: "XINFO|HELP",
        op: "XINFO HELP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "XINFO|STREAM",
        op: "XINFO STREAM",
        key: 2,
        flags: 0,
    },
    Command {
        name: "XLEN",
        op: "XLEN",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XPENDING",
        op: "XPENDING",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XRANGE",
        op: "XRANGE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XREAD",
        op: "XREAD",
        key: 0,
        flags: BLOCKING,
    },
    Command {
        name: "XREADGROUP",
        op: "XREADGROUP",
        key: 0,
        flags: BLOCKING,
    },
    Command {
        name: "XREVRANGE",
        op: "XREVRANGE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XSETID",
        op: "XSETID",
        key: 1,
        flags: 0,
    },
    Command {
        name: "XTRIM",
        op: "XTRIM",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZADD",
        op: "ZADD",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZCARD",
        op: "ZCARD",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZCOUNT",
        op: "ZCOUNT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZDIFF",
        op: "ZDIFF",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ZDIFFSTORE",
        op: "ZDIFFSTORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZINCRBY",
        op: "ZINCRBY",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZINTER",
        op: "ZINTER",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ZINTERCARD",
        op: "ZINTERCARD",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ZINTERSTORE",
        op: "ZINTERSTORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZLEXCOUNT",
        op: "ZLEXCOUNT",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZMPOP",
        op: "ZMPOP",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ZMSCORE",
        op: "ZMSCORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZPOPMAX",
        op: "ZPOPMAX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZPOPMIN",
        op: "ZPOPMIN",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZRANDMEMBER",
        op: "ZRANDMEMBER",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZRANGE",
        op: "ZRANGE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZRANGEBYLEX",
        op: "ZRANGEBYLEX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZRANGEBYSCORE",
        op: "ZRANGEBYSCORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZRANGESTORE",
        op: "ZRANGESTORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZRANK",
        op: "ZRANK",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZREM",
        op: "ZREM",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZREMRANGEBYLEX",
        op: "ZREMRANGEBYLEX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZREMRANGEBYRANK",
        op: "ZREMRANGEBYRANK",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZREMRANGEBYSCORE",
        op: "ZREMRANGEBYSCORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZREVRANGE",
        op: "ZREVRANGE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZREVRANGEBYLEX",
        op: "ZREVRANGEBYLEX",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZREVRANGEBYSCORE",
        op: "ZREVRANGEBYSCORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZREVRANK",
        op: "ZREVRANK",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZSCAN",
        op: "ZSCAN",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZSCORE",
        op: "ZSCORE",
        key: 1,
        flags: 0,
    },
    Command {
        name: "ZUNION",
        op: "ZUNION",
        key: 0,
        flags: 0,
    },
    Command {
        name: "ZUNIONSTORE",
        op: "ZUNIONSTORE",
        key: 1,
        flags: 0,
    },
];

/// Commands of the usual Redis modules (RedisJSON, RediSearch, RedisTimeSeries,
/// RedisBloom, RedisGraph): named by themselves, their key (or index) first.
const MODULE_PREFIXES: &[&str] = &[
    "JSON.", "FT.", "TS.", "BF.", "CF.", "CMS.", "TOPK.", "TDIGEST.", "GRAPH.",
];

/// `_OTHER`: a name that is not a known command (bounded cardinality, as the OpenTelemetry
/// conventions ask of unknown HTTP methods).
pub static OTHER: Command = Command {
    name: "_OTHER",
    op: "_OTHER",
    key: 0,
    flags: 0,
};

/// Slots of the open-addressing table: a power of two over twice the commands.
const SLOTS: usize = 1024;

fn hash(name: &[u8]) -> usize {
    // FNV-1a: names are short, and this runs once per command.
    let mut h: u32 = 0x811c_9dc5;
    for &c in name {
        h ^= c as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize
}

fn table() -> &'static [u16; SLOTS] {
    static TABLE: OnceLock<[u16; SLOTS]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [u16::MAX; SLOTS];
        for (i, c) in COMMANDS.iter().enumerate() {
            let mut s = hash(c.name.as_bytes()) & (SLOTS - 1);
            while t[s] != u16::MAX {
                s = (s + 1) & (SLOTS - 1);
            }
            t[s] = i as u16;
        }
        t
    })
}

/// The command named `upper` (already upper-cased, `CONTAINER|SUB` for a subcommand).
pub fn lookup(upper: &[u8]) -> Option<&'static Command> {
    let t = table();
    let mut s = hash(upper) & (SLOTS - 1);
    loop {
        let i = t[s];
        if i == u16::MAX {
            return None;
        }
        let c = &COMMANDS[i as usize];
        let name = c.name.as_bytes();
        // Names are short: compared byte by byte, without a call to `memcmp`.
        if name.len() == upper.len() && name.iter().zip(upper).all(|(a, b)| a == b) {
            return Some(c);
        }
        s = (s + 1) & (SLOTS - 1);
    }
}

/// A module command's name (upper-cased): one of the known modules' prefixes, then
/// letters, digits, `.` or `_`.
pub fn is_module_command(upper: &[u8]) -> bool {
    MODULE_PREFIXES
        .iter()
        .any(|p| upper.len() > p.len() && upper.starts_with(p.as_bytes()))
        && upper
            .iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'.' || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_every_command_is_found() {
        assert!(COMMANDS.windows(2).all(|w| w[0].name < w[1].name));
        assert!(COMMANDS.len() < SLOTS / 2);
        for c in COMMANDS {
            assert_eq!(lookup(c.name.as_bytes()).map(|f| f.name), Some(c.name));
            assert_eq!(c.op, c.name.replace('|', " "));
        }
        assert!(lookup(b"NOSUCH").is_none());
        assert!(lookup(b"get").is_none(), "lookups take upper-case names");
        assert_eq!(
            lookup(b"CLIENT|SETNAME").map(|c| c.op),
            Some("CLIENT SETNAME")
        );
        assert!(lookup(b"CLIENT").is_some_and(|c| c.has(CONTAINER)));
        assert!(lookup(b"BLPOP").is_some_and(|c| c.has(BLOCKING)));
        assert_eq!(lookup(b"OBJECT|ENCODING").map(|c| c.key), Some(2));
        assert_eq!(lookup(b"PUBLISH").map(|c| c.key), Some(1));
        assert_eq!(lookup(b"EVAL").map(|c| c.key), Some(0));
        assert!(is_module_command(b"JSON.GET"));
        assert!(!is_module_command(b"JSON."));
        assert!(!is_module_command(b"FOO.BAR"));
    }
}
