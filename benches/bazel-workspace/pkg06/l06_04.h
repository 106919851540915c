#ifndef PKG06_L06_04_H
#define PKG06_L06_04_H
#include <string>
#include <vector>

namespace l06_04 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l06_04

#endif
