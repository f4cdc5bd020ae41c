// A real Unleash server for the integration tests, started by tests/unleash_harness.py.
//
// Settings come from the environment (the harness sets them; it also removes every
// DATABASE_* variable, which Unleash would otherwise merge into its own connection):
//   DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME  Unleash's own database (a fresh one:
//                                                    the init tokens below are only created
//                                                    in an empty database)
//   PORT                                              HTTP port, always on 127.0.0.1
//   ADMIN_TOKEN, CLIENT_TOKEN                         e.g. "*:*.admin-secret" and
//                                                    "default:development.client-secret"
'use strict';

const unleash = require('unleash-server');

function required(name) {
    const value = process.env[name];
    if (!value) {
        console.error(`start.js: environment variable ${name} is required`);
        process.exit(2);
    }
    return value;
}

const db = {
    host: required('DB_HOST'),
    port: Number(process.env.DB_PORT || 5432),
    user: required('DB_USER'),
    database: required('DB_NAME'),
    ssl: false,
};
if (process.env.DB_PASSWORD) {
    db.password = process.env.DB_PASSWORD;
}

unleash
    .start({
        db,
        server: { port: Number(required('PORT')), host: '127.0.0.1' },
        logLevel: process.env.LOG_LEVEL || 'info',
        versionCheck: { enable: false },
        telemetry: false,
        authentication: {
            type: 'open-source',
            enableApiToken: true,
            initApiTokens: [
                {
                    environment: '*',
                    project: '*',
                    secret: required('ADMIN_TOKEN'),
                    type: 'admin',
                    tokenName: 'admin',
                },
                {
                    environment: 'development',
                    project: 'default',
                    secret: required('CLIENT_TOKEN'),
                    type: 'client',
                    tokenName: 'client',
                },
            ],
        },
    })
    .catch((error) => {
        console.error('start.js: Unleash failed to start', error);
        process.exit(1);
    });
