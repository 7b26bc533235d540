// Plain Java 8 library: the app logic CI tests without Android (see core/test.sh).
plugins { `java-library` }
java { sourceCompatibility = JavaVersion.VERSION_1_8; targetCompatibility = JavaVersion.VERSION_1_8 }
dependencies { testImplementation("org.junit.jupiter:junit-jupiter:5.9.2") }
tasks.test { useJUnitPlatform(); systemProperty("mcad.golden", "src/test/resources/golden") }
