#ifndef PKG08_L08_04_H
#define PKG08_L08_04_H
#include <string>
#include <vector>

namespace l08_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l08_04

#endif
