#ifndef PKG05_L05_04_H
#define PKG05_L05_04_H
#include <string>
#include <vector>

namespace l05_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l05_04

#endif
