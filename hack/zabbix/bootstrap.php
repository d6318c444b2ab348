<?php
// Bootstraps a fresh Zabbix 6.0 for the operator's tests, through its JSON-RPC API:
//  - a Super-admin API token for Admin (the operator's credential);
//  - a host group, and for each of the two users the operator mints tokens for, a role, a user
//    group and the user:
//      apitoken-readonly:   role type User, API access limited to *.get (allow list),
//                           read access to the host group;
//      apitoken-fullaccess: role type Admin, API deny list token.*, user.*, role.*, usergroup.*,
//                           read-write access to the host group.
// It writes RUNDIR/zabbix.json and RUNDIR/zabbix.env (sourceable) with the URL, the token and the ids.
//
// usage: php bootstrap.php URL RUNDIR          bootstrap a fresh database
//        php bootstrap.php --reuse URL RUNDIR  keep RUNDIR/zabbix.json's objects, check that its
//                                              token works on URL, and rewrite the URL
// It first waits (up to 60 s) for apiinfo.version to answer.

$reuse = isset($argv[1]) && $argv[1] === '--reuse';
$args = array_values(array_slice($argv, $reuse ? 2 : 1));
if (count($args) !== 2) {
	fwrite(STDERR, "usage: php bootstrap.php [--reuse] URL RUNDIR\n");
	exit(2);
}
[$url, $rundir] = $args;
$api_url = rtrim($url, '/').'/api_jsonrpc.php';

class ZabbixError extends Exception {}

function call(string $method, $params, ?string $auth = null) {
	global $api_url;
	$request = ['jsonrpc' => '2.0', 'method' => $method, 'params' => $params, 'id' => 1];
	if ($auth !== null) {
		$request['auth'] = $auth;
	}
	$context = stream_context_create(['http' => [
		'method' => 'POST',
		'header' => "Content-Type: application/json-rpc\r\n",
		'content' => json_encode($request),
		'timeout' => 30,
		'ignore_errors' => true
	]]);
	$body = @file_get_contents($api_url, false, $context);
	if ($body === false) {
		throw new ZabbixError("$method: no answer from $api_url");
	}
	$reply = json_decode($body, true);
	if (!is_array($reply)) {
		throw new ZabbixError("$method: not JSON-RPC: ".substr($body, 0, 300));
	}
	if (array_key_exists('error', $reply)) {
		$e = $reply['error'];
		throw new ZabbixError("$method: {$e['message']} {$e['data']} (code {$e['code']})");
	}
	return $reply['result'];
}

function wait_for_api(): string {
	$deadline = microtime(true) + 60;
	while (true) {
		try {
			return call('apiinfo.version', []);
		}
		catch (ZabbixError $e) {
			if (microtime(true) > $deadline) {
				throw $e;
			}
			usleep(50000);
		}
	}
}

function random_password(): string {
	return 'Zbx-'.bin2hex(random_bytes(12));
}

// create_user makes a role, a user group with the given rights on the host group, and the user.
function create_user(string $session, string $name, int $type, array $api_rules, string $groupid, int $permission): array {
	$roleid = call('role.create', [
		'name' => $name,
		'type' => $type,
		'rules' => $api_rules
	], $session)['roleids'][0];
	$usrgrpid = call('usergroup.create', [
		'name' => $name,
		'rights' => [['id' => $groupid, 'permission' => $permission]]
	], $session)['usrgrpids'][0];
	$password = random_password();
	$userid = call('user.create', [
		'username' => $name,
		'passwd' => $password,
		'roleid' => $roleid,
		'usrgrps' => [['usrgrpid' => $usrgrpid]]
	], $session)['userids'][0];

	return ['id' => $userid, 'name' => $name, 'password' => $password, 'roleId' => $roleid, 'userGroupId' => $usrgrpid];
}

function bootstrap(string $version): array {
	$session = call('user.login', ['username' => 'Admin', 'password' => 'zabbix']);
	$admin = call('user.get', ['output' => ['userid', 'username'], 'filter' => ['username' => 'Admin']], $session)[0];

	$tokenid = call('token.create', ['name' => 'apitoken-operator', 'userid' => $admin['userid']], $session)['tokenids'][0];
	$token = call('token.generate', [$tokenid], $session)[0]['token'];

	$groupid = call('hostgroup.create', ['name' => 'apitoken-operator'], $session)['groupids'][0];
	$readonly = create_user($session, 'apitoken-readonly', 1, [
		'api.access' => 1,
		'api.mode' => 1, // allow list
		'api' => ['*.get']
	], $groupid, 2);
	$fullaccess = create_user($session, 'apitoken-fullaccess', 2, [
		'api.access' => 1,
		'api.mode' => 0, // deny list
		'api' => ['token.*', 'user.*', 'role.*', 'usergroup.*']
	], $groupid, 3);

	call('user.logout', [], $session);

	return [
		'version' => $version,
		'adminUser' => ['id' => $admin['userid'], 'name' => $admin['username'], 'password' => 'zabbix'],
		'adminToken' => $token,
		'adminTokenId' => $tokenid,
		'hostGroup' => ['id' => $groupid, 'name' => 'apitoken-operator'],
		'readOnlyUser' => $readonly,
		'fullAccessUser' => $fullaccess
	];
}

function write_atomically(string $path, string $content): void {
	$tmp = $path.'.tmp';
	file_put_contents($tmp, $content);
	chmod($tmp, 0600);
	rename($tmp, $path);
}

function env_line(string $key, string $value): string {
	return $key."='".str_replace("'", "'\\''", $value)."'\n";
}

try {
	$version = wait_for_api();
	$json_path = $rundir.'/zabbix.json';
	if ($reuse) {
		$state = json_decode(file_get_contents($json_path), true);
		// The token must still work on this database (it is the operator's credential).
		call('user.get', ['output' => ['userid'], 'userids' => [$state['adminUser']['id']]], $state['adminToken']);
		$state['version'] = $version;
	}
	else {
		$state = bootstrap($version);
	}
	$state = ['url' => $url, 'apiUrl' => $api_url] + $state;
	write_atomically($json_path, json_encode($state, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES)."\n");

	$env = env_line('ZABBIX_URL', $url)
		.env_line('ZABBIX_API_URL', $api_url)
		.env_line('ZABBIX_VERSION', $state['version'])
		.env_line('ZABBIX_ADMIN_TOKEN', $state['adminToken'])
		.env_line('ZABBIX_ADMIN_TOKEN_ID', $state['adminTokenId'])
		.env_line('ZABBIX_HOSTGROUP_ID', $state['hostGroup']['id']);
	foreach (['READONLY' => 'readOnlyUser', 'FULLACCESS' => 'fullAccessUser'] as $prefix => $key) {
		$u = $state[$key];
		$env .= env_line("ZABBIX_{$prefix}_USER_ID", $u['id'])
			.env_line("ZABBIX_{$prefix}_USER_NAME", $u['name'])
			.env_line("ZABBIX_{$prefix}_ROLE_ID", $u['roleId'])
			.env_line("ZABBIX_{$prefix}_USERGROUP_ID", $u['userGroupId']);
	}
	write_atomically($rundir.'/zabbix.env', $env);
}
catch (ZabbixError $e) {
	fwrite(STDERR, 'bootstrap.php: '.$e->getMessage()."\n");
	exit(1);
}
