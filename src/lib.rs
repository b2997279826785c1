//! weir: a gRPC-native load balancer and reverse proxy with an HAProxy-style
//! configuration.
//!
//! # Where to look
//!
//! | you want to know…                              | read                         |
//! |------------------------------------------------|------------------------------|
//! | how a config file becomes a typed model        | [`config`] (pipeline at top) |
//! | what the model holds                           | [`config::model`]            |
//! | how a config becomes the live snapshot         | [`runtime`]                  |
//! | how listeners accept and enforce `maxconn`     | [`listener`]                 |
//! | the life of one HTTP/gRPC request              | [`http::request::handle`]    |
//! | ACLs: fetches, converters, matchers, conditions| [`acl`]                      |
//! | `http-request`/`http-response` rules, routing  | [`http::rules`]              |
//! | the httplog line of a request                  | [`http::access_log`]         |
//! | `log-format` strings and the httplog layout    | [`observe::logformat`]       |
//! | forwarding, header rewrite, body pumping       | [`http::forward`]            |
//! | how response bodies stream with flow control   | [`http::body`]               |
//! | failure -> HTTP status / gRPC code / log code  | [`error::ErrorKind::reply`]  |
//! | balancing algorithms                           | [`backend::balance`]         |
//! | upstream HTTP/2 connection pooling             | [`backend::pool`]            |
//! | `mode tcp`                                     | [`l4`]                       |
//! | TLS: certificates, SNI, ALPN, mTLS, upstream   | [`tls`]                      |
//! | active health checks, rise/fall, UP/DOWN logs  | [`health`]                   |
//! | log sinks, HAProxy log layouts                 | [`observe`]                  |
//! | starting and stopping a proxy                  | [`proxy`]                    |
//! | the codename-creator demo                      | [`demo`]                     |

pub mod acl;
pub mod backend;
pub mod config;
pub mod demo;
pub mod error;
pub mod health;
pub mod http;
pub mod l4;
pub mod listener;
pub mod observe;
pub mod proxy;
pub mod runtime;
pub mod stick;
pub mod tls;

pub use error::Error;
