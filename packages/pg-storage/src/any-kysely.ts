import type { Kysely } from 'kysely';

/**
 * A Kysely instance of any database type. The stores query only their own schema, in raw SQL, so
 * the application's table types do not matter to them; and a `Kysely<AppDatabase>` is not
 * assignable to `Kysely<unknown>`, so `any` is the one type every application's instance fits.
 */
// biome-ignore lint/suspicious/noExplicitAny: the application's database type is irrelevant here.
export type AnyKysely = Kysely<any>;
