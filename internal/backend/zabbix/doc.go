// Package zabbix is the driver for Zabbix API tokens (Zabbix 5.4 and later; tested against
// 6.0): backend.Driver, backend.Claimer and backend.Identifier over the JSON-RPC 2.0 API at
// <URL>/api_jsonrpc.php. docs/backends/zabbix.md says how to set Zabbix up for it.
//
// # Accounts
//
// The credential is an API token of a Super admin (on 6.0 only a Super admin may manage other
// users' tokens). Tokens are minted for one of two users the settings name: readOnlyUser (a
// role of type User whose API access is an allow list of *.get methods) gives read_only
// tokens, fullAccessUser (a role that denies token.*, user.*, role.* and usergroup.*) gives
// full_access ones. Self checks both roles. A token of a Super admin is Admin.
//
// # Owner
//
// Zabbix has no labels, so the owner is the token's name (at most 64 characters, unique per
// user):
//
//	k8s.<c8>.<uid>.<serial>.<h6>
//
// c8 is 8 hex digits of sha256(cluster identity), uid the APIToken's UID, serial the issue
// serial in decimal, h6 6 hex digits of sha256 over the spec (name, permission, expiry in
// seconds, description), so that a spec changed under the same serial is a new token, as the
// native driver's idempotency key is a new key. A claimed token gets serial 0 and, for h6, a
// hash of its token id (two tokens claimed by one owner never collide). Only names of exactly
// this form on tokens of the two users are owned: any other token reads back with Owner{}. A
// name whose c8 is not this cluster's digest reads back with Owner.Cluster
// "zabbix-digest:<c8>", never equal to this cluster's identity. A UUID UID and the fixed parts
// leave 7 digits for the serial.
//
// The description is "<namespace/name>: <description>", cut to 2048 characters.
//
// # Create
//
// Crash-safe without an idempotency key, in two requests (three on a retry):
//  1. token.create (status 0) returns the id. Names are unique per user (a unique index on
//     userid and name), so a retry of a create whose reply was lost, or that was killed
//     before it generated the value, is refused as a conflict: then token.get of the target
//     user's token with that exact name finds it. Enabled: it goes on at step 2 (Replayed).
//     Disabled: KindInvalid, below. (Two creates of one name at once: the database refuses
//     the second, which is transient and replays on its retry.)
//  2. token.generate returns the value. Generating again (a retry) kills the value whose reply
//     was lost, so exactly one live value of the create reaches the caller.
//
// The new token is what was asked, enabled and never used; its created_at is the driver's
// clock at step 1 (the server's is read by the next token.get, for the inventory).
//
// A disabled token with the exact name was deactivated after its create: by the operator
// (a token it refused, or could not put in a Secret; it then moves to the next serial, and
// asks for this one again only if that status write was lost) or by a person. The driver
// neither re-enables it (deactivation is final: a person may have disabled it because its
// value leaked) nor deletes or renames it (a renamed token would leave the operator's sight
// and could be re-enabled by hand). It answers KindSpent, and the operator asks for the next
// serial, a new name.
//
// Zabbix keeps expires_at as a 32-bit integer: an expiry after 2038-01-19T03:14:07Z is
// KindInvalid.
//
// # Reading
//
// A token is active when its status is 0 (enabled) and it has not expired. Zabbix keeps no
// time of deactivation: a disabled token gets DeactivatedAt = DeactivatedUnknown (the Unix
// epoch), an expired but enabled one none, so the operator still disables it. lastaccess is
// LastUsedAt; Zabbix stamps it on every authenticated call, refused ones included. List is
// one token.get of every token (Zabbix has no updated_since), filtered in process.
//
// # Adoption
//
// Identify is the admin's token.get {token: value}: it finds the token without using the value,
// so lastaccess stays as it was. Claim renames the token (one token.update): it is a write, not
// a compare-and-set, so two owners claiming one token at the same instant can both succeed;
// the operator lets one token id be held by one APIToken.
//
// # Errors
//
// Zabbix answers HTTP 200 with a generic JSON-RPC code and the reason in data, so the driver
// maps data: "Not authorized.", "API token expired." and a terminated session are
// KindUnauthorized, "No permissions to call" KindForbidden, "No permissions to referred object
// or it does not exist!" on a token KindNotFound, the rest KindInvalid. The credential is sent
// in the body's "auth" before Zabbix 6.4 and as "Authorization: Bearer" from 6.4 on, chosen by
// apiinfo.version (asked once, and again after an Unauthorized).
package zabbix
