#ifndef PKG08_L08_01_H
#define PKG08_L08_01_H
#include <string>
#include <vector>

namespace l08_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l08_01

#endif
